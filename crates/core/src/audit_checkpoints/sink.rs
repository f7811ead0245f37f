//! Where checkpoints are written: object storage (S3, GCS, Azure), configured exactly as the wal-g reader is
//! (`walg::StorageConfig`: a URL plus the usual `AWS_*`, `GOOGLE_*`, `AZURE_*` variables), or a local
//! directory (demo and tests). Objects are written once and never overwritten.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::Checkpoint;

/// Why the sink could not be opened, written or read. Messages name the sink, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("the audit checkpoint sink {0}")]
    Config(String),
    #[error("cannot create the audit checkpoint directory {path}: {source}")]
    Directory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the audit checkpoint sink {sink} failed: {source}")]
    Store {
        sink: String,
        #[source]
        source: object_store::Error,
    },
    #[error("the checkpoint {0} is already in the sink (checkpoints are never overwritten)")]
    Exists(String),
}

/// A place checkpoints are written to and read from. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Sink {
    store: Arc<dyn ObjectStore>,
    root: Path,
    display: String,
    local: Option<PathBuf>,
}

/// Only the credentials and endpoints of the object stores: the `WALG_*` settings of a wal-g reader
/// (prefixes, encryption keys) do not apply to the checkpoint sink.
fn store_env(env: &HashMap<String, String>) -> HashMap<String, String> {
    env.iter()
        .filter(|(k, _)| {
            k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl Sink {
    /// A local directory (created if missing).
    pub fn directory(dir: &FsPath) -> Result<Self, SinkError> {
        std::fs::create_dir_all(dir).map_err(|source| SinkError::Directory {
            path: dir.display().to_string(),
            source,
        })?;
        let dir = std::path::absolute(dir).map_err(|source| SinkError::Directory {
            path: dir.display().to_string(),
            source,
        })?;
        let display = dir.display().to_string();
        let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(|source| {
            SinkError::Store {
                sink: display.clone(),
                source,
            }
        })?;
        Ok(Sink {
            store: Arc::new(fs),
            root: Path::default(),
            display,
            local: Some(dir),
        })
    }

    /// A sink from its URL (`s3://bucket/prefix`, `gs://…`, `azure://…`, `file:///dir`) or a directory path;
    /// credentials come from `env` (the process environment), as for the wal-g reader.
    pub async fn open(url: &str, env: &HashMap<String, String>) -> Result<Self, SinkError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(SinkError::Config("is empty".into()));
        }
        if let Some(path) = url.strip_prefix("file://") {
            let path = path.strip_prefix("localhost").unwrap_or(path);
            return Self::directory(FsPath::new(path));
        }
        if !url.contains("://") {
            return Self::directory(FsPath::new(url));
        }
        let mut config = walg::StorageConfig::from_url(url, &store_env(env))
            .map_err(|e| SinkError::Config(e.to_string()))?;
        if config.needs_region_detection() {
            config
                .detect_region()
                .await
                .map_err(|e| SinkError::Config(e.to_string()))?;
        }
        let store = config
            .build_store()
            .map_err(|e| SinkError::Config(e.to_string()))?;
        Ok(Sink {
            store,
            root: config.root_path(),
            display: config.display_url(),
            local: None,
        })
    }

    /// The sink as a URL or path without credentials (for messages).
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The directory, for a local sink.
    pub fn local_dir(&self) -> Option<&FsPath> {
        self.local.as_deref()
    }

    fn path(&self, name: &str) -> Path {
        self.root.clone().join(name)
    }

    fn store_error(&self, source: object_store::Error) -> SinkError {
        SinkError::Store {
            sink: self.display.clone(),
            source,
        }
    }

    /// Write `checkpoint` once under its [`super::CheckpointBody::object_name`]. Returns the name.
    pub async fn put(&self, checkpoint: &Checkpoint) -> Result<String, SinkError> {
        let name = checkpoint.body.object_name();
        let bytes = serde_json::to_vec_pretty(checkpoint).unwrap_or_default();
        let path = self.path(&name);
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(bytes.clone()), create)
            .await
        {
            Ok(_) => Ok(name),
            Err(object_store::Error::AlreadyExists { .. }) => Err(SinkError::Exists(name)),
            // A store without conditional writes (S3 configured without them): the name is unique (time,
            // sequence and head), so a plain write never replaces another checkpoint.
            Err(object_store::Error::NotImplemented { .. }) => {
                self.store
                    .put(&path, PutPayload::from(bytes))
                    .await
                    .map_err(|e| self.store_error(e))?;
                Ok(name)
            }
            Err(e) => Err(self.store_error(e)),
        }
    }

    /// The names of every checkpoint object, sorted (by time).
    pub async fn names(&self) -> Result<Vec<String>, SinkError> {
        let prefix = (!self.root.as_ref().is_empty()).then_some(&self.root);
        let metas: Vec<_> = self
            .store
            .list(prefix)
            .try_collect()
            .await
            .map_err(|e| self.store_error(e))?;
        let mut names: Vec<String> = metas
            .into_iter()
            .filter_map(|m| m.location.filename().map(str::to_owned))
            .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Read one checkpoint; `Ok(Err(why))` when the object is there but is not a checkpoint.
    pub async fn read(&self, name: &str) -> Result<Result<Checkpoint, String>, SinkError> {
        let bytes = self
            .store
            .get(&self.path(name))
            .await
            .map_err(|e| self.store_error(e))?
            .bytes()
            .await
            .map_err(|e| self.store_error(e))?;
        Ok(serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
    }

    /// Every checkpoint, in name order, with the ones that could not be parsed.
    pub async fn read_all(&self) -> Result<Vec<(String, Result<Checkpoint, String>)>, SinkError> {
        let mut out = Vec::new();
        for name in self.names().await? {
            let cp = self.read(&name).await?;
            out.push((name, cp));
        }
        Ok(out)
    }

    /// The newest readable checkpoint (by name, that is by time) that `accept` takes.
    pub async fn latest(
        &self,
        accept: impl Fn(&Checkpoint) -> bool,
    ) -> Result<Option<Checkpoint>, SinkError> {
        for name in self.names().await?.iter().rev() {
            if let Ok(cp) = self.read(name).await? {
                if accept(&cp) {
                    return Ok(Some(cp));
                }
            }
        }
        Ok(None)
    }
}
