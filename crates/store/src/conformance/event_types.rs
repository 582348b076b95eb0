//! [`EventTypeStore`]: the catalogue's CRUD, listing by name, the validated types.

use crate::*;

fn t(name: &str, schema: Option<&str>, validate: bool) -> EventType {
    EventType {
        name: name.into(),
        description: format!("about {name}"),
        schema: schema.map(str::to_owned),
        validate,
        deprecated: false,
        example: Some(r#"{"a":1}"#.into()),
        created_at: 10,
        updated_at: 10,
    }
}

/// Not part of [`super::run_all`] (a backend gains it when it implements the trait). Needs a
/// fresh store.
pub async fn event_type_store<S: EventTypeStore>(s: &S) {
    let schema = r#"{"type":"object"}"#;
    s.create_event_type(t("invoice.paid", Some(schema), true))
        .await
        .unwrap();
    s.create_event_type(t("a.first", None, false))
        .await
        .unwrap();
    s.create_event_type(t("user/created:v2", Some(schema), false))
        .await
        .unwrap();
    assert!(matches!(
        s.create_event_type(t("invoice.paid", None, false)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.get_event_type("invoice.paid").await.unwrap().unwrap(),
        t("invoice.paid", Some(schema), true)
    );
    assert!(s.get_event_type("nope").await.unwrap().is_none());
    let page = |before: Option<&str>, limit| Page {
        before: before.map(str::to_owned),
        limit,
        max_bytes: usize::MAX,
    };
    let first = s.list_event_types(page(None, 2)).await.unwrap();
    assert!(first.more);
    let names: Vec<_> = first.rows.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a.first", "invoice.paid"]);
    let rest = s
        .list_event_types(page(Some("invoice.paid"), 2))
        .await
        .unwrap();
    assert!(!rest.more);
    assert_eq!(rest.rows[0].name, "user/created:v2");
    // Only validated types with a schema feed the validators.
    let v: Vec<_> = s
        .validated_event_types(10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(v, ["invoice.paid"]);
    let mut changed = t("a.first", Some(schema), true);
    changed.deprecated = true;
    changed.updated_at = 20;
    changed.created_at = 999; // ignored
    assert!(s.update_event_type(changed).await.unwrap());
    let got = s.get_event_type("a.first").await.unwrap().unwrap();
    assert!(got.deprecated && got.validate);
    assert_eq!((got.created_at, got.updated_at), (10, 20));
    assert!(!s.update_event_type(t("nope", None, false)).await.unwrap());
    assert_eq!(s.validated_event_types(1).await.unwrap().len(), 1);
    assert!(s.delete_event_type("a.first").await.unwrap());
    assert!(!s.delete_event_type("a.first").await.unwrap());
    assert!(s.get_event_type("a.first").await.unwrap().is_none());
}
