//! The SQL files of a folder: the detectors of `sql/` and the forecast jobs of
//! `sql/forecast/` are both every `*.sql` file in it, in file-name order, each named after its
//! file (without `.sql`).

use std::path::{Path, PathBuf};

/// One query file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlFile {
    pub name: String,
    pub path: PathBuf,
    pub sql: String,
}

/// The folder could not be listed, or one of its files read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct ReadSqlError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Every `*.sql` file directly in `dir`, sorted by file name.
pub fn read_sql_files(dir: &Path) -> Result<Vec<SqlFile>, ReadSqlError> {
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReadSqlError { path, source }
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(failed(dir))? {
        let path = entry.map_err(failed(dir))?.path();
        if path.extension().is_some_and(|e| e == "sql") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let sql = std::fs::read_to_string(&path).map_err(failed(&path))?;
            let name = path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok(SqlFile { name, path, sql })
        })
        .collect()
}
