//! Writes the CRD YAML into `crds/` and into the Helm chart's `crds/` folder.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use taxistream_crds::manifests::crd_files;

/// Where the generated files go, relative to the workspace root.
const TARGETS: [&str; 2] = ["crds", "charts/taxistream/crds"];

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let files = match crd_files() {
        Ok(files) => files,
        Err(e) => {
            eprintln!("crdgen: cannot render CRDs: {e}");
            return ExitCode::FAILURE;
        }
    };
    for dir in TARGETS {
        let dir = root.join(dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("crdgen: cannot create {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        for (name, yaml) in &files {
            let path = dir.join(name);
            if let Err(e) = std::fs::write(&path, yaml) {
                eprintln!("crdgen: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            println!("wrote {}", path.display());
        }
    }
    ExitCode::SUCCESS
}
