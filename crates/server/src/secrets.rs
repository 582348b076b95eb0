//! Secrets at rest: where the master key comes from, the check that it is the key this database
//! was sealed with, sealing values that earlier releases stored in clear, and re-sealing
//! everything with a new key (`hookwarden secrets rotate`).
//!
//! The master key, in order of preference:
//! 1. `security.master_key` (base64 of 32 bytes; best given as `HOOKWARDEN_SECURITY__MASTER_KEY`);
//! 2. `security.master_key_file` (a file holding that base64: a secret manager's mounted file);
//! 3. with the embedded SQLite database only: `master.key` beside the database, made on the first
//!    start (mode 0600) and read on later ones. With PostgreSQL, instances share the database and
//!    must share the key, so `serve` refuses to start without 1 or 2.
//!
//! Earlier keys (during a rotation) are opened too: `security.previous_master_keys`,
//! `security.previous_master_key_files`, and further lines of the `master.key` file.
//!
//! The database keeps a check value sealed with the key (`meta`: [`CHECK_KEY`]). A start with a
//! key that cannot open it is refused, so an instance with a wrong or new key never seals fresh
//! secrets that the others (or the next start) cannot read, and a lost `master.key` is never
//! silently replaced.

use crate::config::{Backend, Config};
use crate::crypto::{Sealing, SecretBox, SecretBoxError, new_master_key};
use hookwarden_store::{SealedColumn, SealedShape, SealedStore, StoreError};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The `meta` entry holding the check value.
pub const CHECK_KEY: &str = "security.master_key_check";
/// The check value's plain text.
const CHECK_TEXT: &str = "hookwarden master key check v1";
/// The file name of the generated key, beside the SQLite database.
pub const KEY_FILE_NAME: &str = "master.key";
/// The largest key file read.
const MAX_KEY_FILE: u64 = 16 * 1024;

/// Where the master key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `security.master_key`.
    Config,
    /// `security.master_key_file`.
    File(PathBuf),
    /// The `master.key` file beside the SQLite database (`created`: made by this start).
    DataDir { path: PathBuf, created: bool },
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Config => f.write_str("security.master_key"),
            KeySource::File(p) => write!(f, "security.master_key_file {}", p.display()),
            KeySource::DataDir { path, .. } => write!(f, "{}", path.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{0}")]
    Key(String),
    #[error("security.master_key: {0}")]
    Box(#[from] SecretBoxError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

fn key_err(m: impl Into<String>) -> SecretsError {
    SecretsError::Key(m.into())
}

/// The `master.key` path for an embedded database.
pub fn data_dir_key_path(config: &Config) -> PathBuf {
    let db = config.sqlite_path();
    db.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join(KEY_FILE_NAME)
}

/// Reads a key file: one base64 key per line (the first is the current one), `#` comments.
fn read_key_file(path: &Path) -> Result<Vec<String>, SecretsError> {
    use std::io::Read;
    let f = std::fs::File::open(path)
        .map_err(|e| key_err(format!("cannot read {}: {e}", path.display())))?;
    warn_if_readable_by_others(path, &f);
    let mut text = String::new();
    f.take(MAX_KEY_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| key_err(format!("cannot read {}: {e}", path.display())))?;
    if text.len() as u64 > MAX_KEY_FILE {
        return Err(key_err(format!(
            "{} is too large for a key file",
            path.display()
        )));
    }
    let keys: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    if keys.is_empty() {
        return Err(key_err(format!("{} holds no key", path.display())));
    }
    Ok(keys)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path, f: &std::fs::File) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = f.metadata()
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", m.permissions().mode() & 0o777),
            "the master key file is readable by other users; make it 0600"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path, _: &std::fs::File) {}

/// Writes a key file (0600) atomically: a temporary file beside it, synced, then renamed.
pub fn write_key_file(path: &Path, keys: &[String]) -> Result<(), SecretsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{KEY_FILE_NAME}.tmp"));
    let mut text = String::from(
        "# Hookwarden master key (first line) and earlier keys still being rotated out.\n\
         # Keep a copy apart from database backups: without it the sealed secrets are lost.\n",
    );
    for k in keys {
        text.push_str(k);
        text.push('\n');
    }
    let err = |e: std::io::Error| key_err(format!("cannot write {}: {e}", path.display()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = private_file(&tmp).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A new file only its owner can read (fails if it exists).
#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// The configured keys (current first), and where the current one came from. `None` when
/// nothing is configured.
fn configured(config: &Config) -> Result<Option<(Vec<String>, KeySource)>, SecretsError> {
    let s = &config.security;
    let mut keys = match (&s.master_key, &s.master_key_file) {
        (Some(_), Some(_)) => {
            return Err(key_err(
                "security.master_key and security.master_key_file are both set; keep one",
            ));
        }
        (Some(k), None) => vec![(k.clone(), KeySource::Config)],
        (None, Some(p)) => {
            let mut from_file = read_key_file(p)?.into_iter();
            let first = from_file.next().unwrap_or_default();
            let mut v = vec![(first, KeySource::File(p.clone()))];
            v.extend(from_file.map(|k| (k, KeySource::File(p.clone()))));
            v
        }
        (None, None) => return Ok(None),
    };
    keys.extend(
        s.previous_master_keys
            .iter()
            .map(|k| (k.clone(), KeySource::Config)),
    );
    for p in &s.previous_master_key_files {
        keys.extend(
            read_key_file(p)?
                .into_iter()
                .map(|k| (k, KeySource::File(p.clone()))),
        );
    }
    let source = keys
        .first()
        .map(|k| k.1.clone())
        .unwrap_or(KeySource::Config);
    Ok(Some((keys.into_iter().map(|k| k.0).collect(), source)))
}

/// The master keys to use with `store` (current first), from the configuration or, for SQLite,
/// the `master.key` file (made on a first start, when the database holds nothing sealed).
pub async fn load_keys(
    config: &Config,
    store: &dyn SealedStore,
) -> Result<(Vec<String>, KeySource), SecretsError> {
    if let Some(found) = configured(config)? {
        return Ok(found);
    }
    if let Backend::Postgres(_) = config.backend() {
        return Err(key_err(
            "PostgreSQL needs a master key shared by every instance: make one with \
             `hookwarden secrets new-key` and give it to each instance as \
             HOOKWARDEN_SECURITY__MASTER_KEY (or write it to a file only Hookwarden can read \
             and set security.master_key_file); keep a copy apart from database backups",
        ));
    }
    let path = data_dir_key_path(config);
    if path.exists() {
        let keys = read_key_file(&path)?;
        return Ok((
            keys,
            KeySource::DataDir {
                path,
                created: false,
            },
        ));
    }
    if let Some(check) = store.meta_get(CHECK_KEY).await? {
        let kid = check
            .strip_prefix("enc2:")
            .and_then(|r| r.split(':').next())
            .unwrap_or("?");
        return Err(key_err(format!(
            "the master key file {} is missing, but this database's secrets are sealed with \
             master key {kid}: restore the file from your backup (a new key cannot open them), \
             or configure that key as security.master_key",
            path.display()
        )));
    }
    let key = new_master_key();
    write_key_file(&path, std::slice::from_ref(&key))?;
    tracing::info!(file = %path.display(), "generated the master key that seals secrets at rest; back it up apart from the database");
    Ok((
        vec![key],
        KeySource::DataDir {
            path,
            created: true,
        },
    ))
}

/// Builds the [`SecretBox`] of `keys` (current first).
pub fn secret_box(keys: &[String]) -> Result<SecretBox, SecretsError> {
    let (current, previous) = keys.split_first().ok_or_else(|| key_err("no master key"))?;
    Ok(SecretBox::new(current, previous)?)
}

/// Checks the key against the database's check value (writing one on a first start), so that
/// a wrong key is refused before it seals anything.
pub async fn verify_key(sb: &SecretBox, store: &dyn SealedStore) -> Result<(), SecretsError> {
    let stored = match store.meta_get(CHECK_KEY).await? {
        Some(v) => v,
        None => {
            store
                .meta_put_if_absent(CHECK_KEY, &sb.seal(CHECK_TEXT))
                .await?
        }
    };
    match sb.open(&stored) {
        Ok(t) if t == CHECK_TEXT => Ok(()),
        Ok(_) | Err(SecretBoxError::Decrypt) => Err(key_err(format!(
            "the configured master key ({}) is not the one this database's secrets are sealed with",
            sb.key_id()
        ))),
        Err(SecretBoxError::UnknownKey(kid)) => Err(key_err(format!(
            "this database's secrets are sealed with master key {kid}, but the configured key is {}: \
             configure key {kid} (as the master key, or in security.previous_master_keys during a rotation)",
            sb.key_id()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Counts of one pass over the sealed columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealCounts {
    /// Secrets (single values, array elements, header values) seen.
    pub seen: u64,
    /// Already sealed with the current key.
    pub current: u64,
    /// Sealed (or re-sealed) by this pass.
    pub sealed: u64,
    /// Left as they were: stored in clear, or sealed with another key (when the pass did not
    /// write them).
    pub plain: u64,
    pub stale: u64,
    /// Values that no configured key opens.
    pub unreadable: u64,
    /// Rows that changed while the pass worked on them (picked up by the next pass).
    pub raced: u64,
}

/// What a pass writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassMode {
    /// Count only.
    Count,
    /// Seal values stored in clear (every start).
    SealPlain,
    /// Re-seal everything not sealed with the current key (rotation).
    Reseal,
}

/// One pass over every sealed column (and the check value), in batches of `batch` rows;
/// `progress` is called after each batch with the column and the counts so far.
pub async fn pass(
    sb: &SecretBox,
    store: &dyn SealedStore,
    mode: PassMode,
    batch: usize,
    mut progress: impl FnMut(SealedColumn, &SealCounts),
) -> Result<SealCounts, SecretsError> {
    let mut counts = SealCounts::default();
    for column in SealedColumn::ALL {
        let mut after = None;
        loop {
            let rows = store.sealed_rows(column, after.clone(), batch).await?;
            let Some(last) = rows.last() else { break };
            after = Some(last.key.clone());
            let done = rows.len() < batch;
            for row in rows {
                let Some(new) = transform(sb, column.shape(), &row.value, mode, &mut counts) else {
                    continue;
                };
                if !store
                    .replace_sealed(column, &row.key, &row.value, &new)
                    .await?
                {
                    counts.raced += 1;
                }
            }
            progress(column, &counts);
            if done {
                break;
            }
        }
    }
    if mode == PassMode::Reseal
        && let Some(check) = store.meta_get(CHECK_KEY).await?
        && sb.sealing(&check) != Sealing::Current
        && sb.open(&check).is_ok_and(|t| t == CHECK_TEXT)
    {
        store
            .meta_replace(CHECK_KEY, &check, &sb.seal(CHECK_TEXT))
            .await?;
    }
    Ok(counts)
}

/// The stored text with its secrets (re)sealed as `mode` asks, or `None` when nothing changes.
fn transform(
    sb: &SecretBox,
    shape: SealedShape,
    stored: &str,
    mode: PassMode,
    counts: &mut SealCounts,
) -> Option<String> {
    let mut one = |v: &str| -> Option<String> {
        counts.seen += 1;
        let sealing = sb.sealing(v);
        let write = match (sealing, mode) {
            (Sealing::Current, _) => {
                counts.current += 1;
                return None;
            }
            (Sealing::Plain, PassMode::SealPlain | PassMode::Reseal) => true,
            (Sealing::Stale, PassMode::Reseal) => true,
            _ => false,
        };
        match sb.open(v) {
            Err(_) => {
                counts.unreadable += 1;
                None
            }
            Ok(plain) if write => {
                counts.sealed += 1;
                Some(sb.seal(&plain))
            }
            Ok(_) => {
                match sealing {
                    Sealing::Plain => counts.plain += 1,
                    _ => counts.stale += 1,
                }
                None
            }
        }
    };
    match shape {
        SealedShape::Value => one(stored),
        SealedShape::JsonArray => {
            let Ok(list) = serde_json::from_str::<Vec<String>>(stored) else {
                counts.unreadable += 1;
                return None;
            };
            let mut changed = false;
            let out: Vec<String> = list
                .into_iter()
                .map(|v| match one(&v) {
                    Some(n) => {
                        changed = true;
                        n
                    }
                    None => v,
                })
                .collect();
            changed.then(|| serde_json::to_string(&out).ok()).flatten()
        }
        SealedShape::JsonObjectValues => {
            let Ok(map) = serde_json::from_str::<BTreeMap<String, String>>(stored) else {
                counts.unreadable += 1;
                return None;
            };
            let mut changed = false;
            let out: BTreeMap<String, String> = map
                .into_iter()
                .map(|(k, v)| match one(&v) {
                    Some(n) => {
                        changed = true;
                        (k, n)
                    }
                    None => (k, v),
                })
                .collect();
            changed.then(|| serde_json::to_string(&out).ok()).flatten()
        }
    }
}

/// Everything `serve` does about secrets at start: the keys, the check, and sealing what earlier
/// releases stored in clear. Refuses to start when stored secrets cannot be opened.
pub async fn at_start(
    config: &Config,
    store: &dyn SealedStore,
) -> Result<(SecretBox, KeySource), SecretsError> {
    let (keys, source) = load_keys(config, store).await?;
    let sb = secret_box(&keys)?;
    verify_key(&sb, store).await?;
    let counts = pass(&sb, store, PassMode::SealPlain, 500, |_, _| {}).await?;
    if counts.sealed > 0 || counts.raced > 0 {
        tracing::info!(
            sealed = counts.sealed,
            "sealed secrets that an earlier release stored in clear"
        );
        // Their clear text must not stay behind in freed pages.
        compact(store).await;
    }
    if counts.unreadable > 0 {
        return Err(key_err(format!(
            "{} stored secrets cannot be opened with the configured master keys (key {}{}): \
             configure the key they were sealed with",
            counts.unreadable,
            sb.key_id(),
            if sb.previous_ids().is_empty() {
                String::new()
            } else {
                format!(", previous {}", sb.previous_ids().join(", "))
            }
        )));
    }
    if counts.stale > 0 {
        tracing::warn!(
            values = counts.stale,
            "secrets are still sealed with a previous master key: run `hookwarden secrets rotate`"
        );
    }
    Ok((sb, source))
}

/// What `hookwarden secrets rotate` did.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// The key everything is sealed with now.
    pub key_id: String,
    /// The keys it replaced (they may be dropped from the configuration now).
    pub retired: Vec<String>,
    /// Where the key lives.
    pub source: KeySource,
    /// A new key was made (the `master.key` file of an embedded database).
    pub generated: bool,
    pub counts: SealCounts,
}

/// Re-seals every secret with the current master key. With configured keys (`master_key` and
/// `previous_master_keys`, or their files) that is all it does; with the embedded database's
/// `master.key` file it first makes a new key (kept in the file beside the old one until every
/// secret is re-sealed, then alone). Interrupted, it can be run again and goes on where it was:
/// every value is read and swapped on its own.
pub async fn rotate(
    config: &Config,
    store: &dyn SealedStore,
    mut progress: impl FnMut(SealedColumn, &SealCounts),
) -> Result<Rotation, SecretsError> {
    let (mut keys, source) = load_keys(config, store).await?;
    let mut generated = false;
    if let KeySource::DataDir { path, .. } = &source
        && keys.len() == 1
    {
        keys.insert(0, new_master_key());
        write_key_file(path, &keys)?;
        generated = true;
    }
    let sb = secret_box(&keys)?;
    verify_key(&sb, store).await?;
    let mut counts = SealCounts::default();
    // Values that changed under the pass (live instances writing) are picked up again.
    for _ in 0..5 {
        counts = pass(&sb, store, PassMode::Reseal, 200, &mut progress).await?;
        if counts.raced == 0 {
            break;
        }
    }
    if counts.unreadable > 0 {
        return Err(key_err(format!(
            "{} stored secrets cannot be opened with the configured keys; nothing else is left              to do, but those stay as they are (configure the key they were sealed with and run              this again)",
            counts.unreadable
        )));
    }
    if counts.sealed > 0 {
        compact(store).await;
    }
    let retired: Vec<String> = sb.previous_ids().into_iter().map(str::to_owned).collect();
    if let KeySource::DataDir { path, .. } = &source
        && counts.raced == 0
        && keys.len() > 1
    {
        write_key_file(path, &keys[..1])?;
    }
    Ok(Rotation {
        key_id: sb.key_id().to_owned(),
        retired,
        source,
        generated,
        counts,
    })
}

/// The counts of a pass that writes nothing, and the keys.
pub async fn status(
    config: &Config,
    store: &dyn SealedStore,
) -> Result<(SecretBox, KeySource, SealCounts), SecretsError> {
    if configured(config)?.is_none()
        && matches!(config.backend(), Backend::Sqlite(_))
        && !data_dir_key_path(config).exists()
    {
        return Err(key_err(format!(
            "no master key is configured and {} does not exist (`serve` makes it on its first start)",
            data_dir_key_path(config).display()
        )));
    }
    let (keys, source) = load_keys(config, store).await?;
    let sb = secret_box(&keys)?;
    verify_key(&sb, store).await?;
    let counts = pass(&sb, store, PassMode::Count, 500, |_, _| {}).await?;
    Ok((sb, source, counts))
}

/// [`SealedStore::compact_sealed`], a failure logged (the values are sealed either way).
async fn compact(store: &dyn SealedStore) {
    match store.compact_sealed().await {
        Ok(()) => tracing::info!(
            "rewrote the tables that hold secrets, so no earlier form of them is left in freed pages"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "could not rewrite the tables that hold secrets; earlier forms of them may remain in freed pages until the database reuses them")
        }
    }
}

/// Seals a map of custom header values.
pub fn seal_headers(
    sb: &SecretBox,
    headers: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| (k.clone(), sb.seal(v)))
        .collect()
}

/// Opens a map of stored custom header values.
pub fn open_headers(
    sb: &SecretBox,
    headers: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, SecretBoxError> {
    headers
        .iter()
        .map(|(k, v)| Ok((k.clone(), sb.open(v)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_seals_each_shape_and_counts() {
        let sb = SecretBox::ephemeral();
        let mut c = SealCounts::default();
        let sealed = transform(
            &sb,
            SealedShape::Value,
            "whsec_x",
            PassMode::SealPlain,
            &mut c,
        )
        .expect("plain is sealed");
        assert_eq!(sb.open(&sealed).unwrap(), "whsec_x");
        assert_eq!(
            transform(&sb, SealedShape::Value, &sealed, PassMode::Reseal, &mut c),
            None
        );
        let arr = transform(
            &sb,
            SealedShape::JsonArray,
            &serde_json::to_string(&["a", &sealed]).unwrap(),
            PassMode::SealPlain,
            &mut c,
        )
        .unwrap();
        let list: Vec<String> = serde_json::from_str(&arr).unwrap();
        assert_eq!(sb.open(&list[0]).unwrap(), "a");
        assert_eq!(
            list[1], sealed,
            "already sealed values are kept as they are"
        );
        let obj = transform(
            &sb,
            SealedShape::JsonObjectValues,
            r#"{"authorization":"Bearer t","x-team":"blue"}"#,
            PassMode::SealPlain,
            &mut c,
        )
        .unwrap();
        assert!(!obj.contains("Bearer t") && !obj.contains("blue"), "{obj}");
        let map: BTreeMap<String, String> = serde_json::from_str(&obj).unwrap();
        assert_eq!(
            open_headers(&sb, &map).unwrap()["authorization"],
            "Bearer t"
        );
        assert_eq!(c.sealed, 4);
        assert_eq!(c.current, 2);
        // Counting writes nothing; something sealed with an unknown key is unreadable.
        let other = SecretBox::ephemeral();
        let mut c = SealCounts::default();
        assert_eq!(
            transform(&sb, SealedShape::Value, "plain", PassMode::Count, &mut c),
            None
        );
        assert_eq!(
            transform(
                &sb,
                SealedShape::Value,
                &other.seal("x"),
                PassMode::Reseal,
                &mut c
            ),
            None
        );
        assert_eq!((c.plain, c.unreadable), (1, 1));
        assert_eq!(
            transform(
                &sb,
                SealedShape::JsonArray,
                "not json",
                PassMode::Reseal,
                &mut c
            ),
            None
        );
        assert_eq!(c.unreadable, 2);
    }

    #[test]
    fn key_files_are_private_and_hold_current_then_previous() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        let (a, b) = (new_master_key(), new_master_key());
        write_key_file(&path, &[a.clone(), b.clone()]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(read_key_file(&path).unwrap(), vec![a.clone(), b]);
        write_key_file(&path, std::slice::from_ref(&a)).unwrap();
        assert_eq!(read_key_file(&path).unwrap(), vec![a]);
        std::fs::write(&path, "# only a comment\n").unwrap();
        assert!(read_key_file(&path).is_err());
    }
}
