//! Finding the Python file of a user object type, as ConCoord 1.1's `-o module.Class` did:
//! the module on `PYTHONPATH` (or in an `--object-path` directory), or a file named
//! outright (`-o /foo/tencounter.py:TenCounter`).
//!
//! Only the replica that reads the file (the founder) and the CLI use this; the group runs
//! the copy that went through consensus.

use std::path::{Path, PathBuf};

/// A user type's code as read from disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectSource {
    pub module: String,
    pub class: String,
    pub source: String,
    pub path: PathBuf,
}

impl ObjectSource {
    /// `module.Class`.
    pub fn dotted_name(&self) -> String {
        format!("{}.{}", self.module, self.class)
    }
}

/// Why a type's file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("'{0}' is not MODULE.CLASS or FILE.py:CLASS")]
    BadSpec(String),
    #[error("no module '{module}' ({file}) in {searched}")]
    NotFound {
        module: String,
        file: String,
        searched: String,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The directories searched for a module: `object_path` first, then `PYTHONPATH`, then
/// the working directory (where Python itself would look for a script's neighbours).
pub fn search_dirs(object_path: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = object_path.to_vec();
    if let Some(pp) = std::env::var_os("PYTHONPATH") {
        dirs.extend(std::env::split_paths(&pp).filter(|p| !p.as_os_str().is_empty()));
    }
    dirs.push(PathBuf::from("."));
    dirs
}

/// Finds and reads the type `spec` names: `pkg.module.Class` or `path/file.py:Class`.
pub fn find(spec: &str, object_path: &[PathBuf]) -> Result<ObjectSource, SourceError> {
    if let Some((file, class)) = spec.rsplit_once(':')
        && file.ends_with(".py")
    {
        let path = PathBuf::from(file);
        let module = module_of(&path).ok_or_else(|| SourceError::BadSpec(spec.into()))?;
        return read(&path, module, class.to_string());
    }
    let (module, class) = spec
        .rsplit_once('.')
        .filter(|(m, c)| !m.is_empty() && !c.is_empty())
        .ok_or_else(|| SourceError::BadSpec(spec.into()))?;
    let relative: PathBuf = format!("{}.py", module.replace('.', "/")).into();
    let dirs = search_dirs(object_path);
    for dir in &dirs {
        let path = dir.join(&relative);
        if path.is_file() {
            return read(&path, module.to_string(), class.to_string());
        }
    }
    Err(SourceError::NotFound {
        module: module.to_string(),
        file: relative.display().to_string(),
        searched: dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// The module name of a file: its stem.
pub fn module_of(path: &Path) -> Option<String> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn read(path: &Path, module: String, class: String) -> Result<ObjectSource, SourceError> {
    let source = std::fs::read_to_string(path).map_err(|source| SourceError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(ObjectSource {
        module,
        class,
        source,
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_are_found_on_the_object_path_and_by_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pkg")).unwrap();
        std::fs::write(dir.path().join("pkg/ten.py"), "class T:\n    pass\n").unwrap();
        let found = find("pkg.ten.T", &[dir.path().to_path_buf()]).unwrap();
        assert_eq!(
            (found.module.as_str(), found.class.as_str()),
            ("pkg.ten", "T")
        );
        assert_eq!(found.dotted_name(), "pkg.ten.T");
        let file = dir.path().join("pkg/ten.py");
        let by_file = find(&format!("{}:T", file.display()), &[]).unwrap();
        assert_eq!(
            (by_file.module.as_str(), by_file.source.as_str()),
            ("ten", found.source.as_str())
        );
        let missing = find("nowhere.T", &[dir.path().to_path_buf()]).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("no module 'nowhere' (nowhere.py) in "),
            "{missing}"
        );
        assert!(matches!(find("Counter", &[]), Err(SourceError::BadSpec(_))));
    }
}
