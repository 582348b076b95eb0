# Shared by .ci/run and .ci/setup-interop (sourced, not run).

fail() {
  echo "ci: $*" >&2
  exit 1
}

# Installs Debian packages (refreshing the package index once if the first try fails). Fails
# loudly when there is no apt-get or the install does not work: a missing tool is never skipped.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || fail "$* missing, and no apt-get to install it with"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1; then
    apt-get update -q >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null \
      || fail "cannot install $*"
  fi
}

# Runs a command as PostgreSQL's superuser: through the local socket as the postgres system user
# when we are root (peer authentication, whatever pg_hba.conf says for TCP), else over TCP as the
# postgres role (a developer machine with trust or a password in PGPASSWORD).
as_pg_superuser() {
  if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 && command -v runuser >/dev/null 2>&1; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@" -h 127.0.0.1 -U postgres
  fi
}
