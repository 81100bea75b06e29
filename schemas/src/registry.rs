//! Schema ids for the Confluent wire format: which writer schema a framed record was written with.
//!
//! The built-in registry holds the current version of every kind under a fixed id
//! ([`RecordKind::builtin_schema_id`]). Older versions that are still on the wire are added with
//! [`SchemaRegistry::register`] so their records keep decoding.

use std::collections::HashMap;
use std::sync::Arc;

use serde_avro_fast::Schema;

use crate::{RecordKind, SchemaError};

/// One schema version known to a registry.
#[derive(Debug)]
pub struct RegisteredSchema {
    pub id: u32,
    pub kind: RecordKind,
    pub schema: Arc<Schema>,
}

/// Schema ids to writer schemas, and the id each kind is written with.
#[derive(Debug)]
pub struct SchemaRegistry {
    by_id: HashMap<u32, RegisteredSchema>,
}

impl SchemaRegistry {
    /// A registry holding the current schema of every kind under its built-in id.
    pub fn builtin() -> Self {
        let by_id = RecordKind::ALL
            .iter()
            .map(|&kind| {
                let id = kind.builtin_schema_id();
                let schema = kind.shared_schema();
                (id, RegisteredSchema { id, kind, schema })
            })
            .collect();
        SchemaRegistry { by_id }
    }

    /// Adds another writer schema (an older or newer version of `kind`) under `id`.
    pub fn register(&mut self, id: u32, kind: RecordKind, avsc: &str) -> Result<(), SchemaError> {
        if let Some(existing) = self.by_id.get(&id) {
            return Err(SchemaError::IdTaken {
                id,
                kind: existing.kind,
            });
        }
        let invalid = |message: String| SchemaError::Invalid { kind, message };
        let json: serde_json::Value =
            serde_json::from_str(avsc).map_err(|e| invalid(e.to_string()))?;
        let found = match (json["namespace"].as_str(), json["name"].as_str()) {
            (Some(namespace), Some(name)) => format!("{namespace}.{name}"),
            (None, Some(name)) => name.to_owned(),
            _ => return Err(invalid("the top-level record has no name".to_owned())),
        };
        if found != kind.full_name() {
            return Err(SchemaError::WrongRecord {
                found,
                expected: kind.full_name(),
            });
        }
        let schema: Schema = avsc.parse().map_err(|e| invalid(format!("{e}")))?;
        self.by_id.insert(
            id,
            RegisteredSchema {
                id,
                kind,
                schema: Arc::new(schema),
            },
        );
        Ok(())
    }

    /// The schema registered under `id`.
    pub fn get(&self, id: u32) -> Option<&RegisteredSchema> {
        self.by_id.get(&id)
    }

    /// The id records of `kind` are written with.
    pub fn writer_id(&self, kind: RecordKind) -> u32 {
        kind.builtin_schema_id()
    }

    /// All registered schemas, by id.
    pub fn iter(&self) -> impl Iterator<Item = &RegisteredSchema> {
        let mut all: Vec<_> = self.by_id.values().collect();
        all.sort_by_key(|s| s.id);
        all.into_iter()
    }
}

impl Default for SchemaRegistry {
    fn default() -> Self {
        SchemaRegistry::builtin()
    }
}
