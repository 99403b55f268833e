//! The POSIX `sh` scripts `concoord remote` runs on a host. Every value from the user goes
//! in through [`quote`], so spaces, quotes and `$` reach the remote program unchanged.
//!
//! Layout of the install directory on a host (relative: under the SSH user's home):
//! `concoord` (the binary), `config/` (CONCOORD_CONFIG_DIR of the replicas started there,
//! with the Route53 credentials), `logs/NAME.log`, `run/NAME.pid`, and the replicas' `-w`
//! data, since they run in that directory.

use super::ssh::{SshError, quote};

/// Exit status of the start script when a replica already runs under that name.
pub const ALREADY_RUNNING: i32 = 3;
/// Exit status of the start script when the replica exited right after starting.
pub const EXITED_AT_ONCE: i32 = 4;

/// Shell helpers: is the process (or container) in a PID file still ours and running?
/// A PID whose /proc entry is not a concoord process (a reused PID, a zombie) is not.
const ALIVE: &str = r#"
alive() {
  case "$1" in
    docker:*) [ "$(docker inspect -f '{{.State.Running}}' "${1#docker:}" 2>/dev/null)" = true ] ;;
    *) kill -0 "$1" 2>/dev/null || return 1
       [ -r "/proc/$1/cmdline" ] || return 0
       tr '\0' ' ' < "/proc/$1/cmdline" | grep -q concoord ;;
  esac
}
"#;

/// Prints `uname -sm` (the check that the login works).
pub fn probe() -> String {
    "uname -sm".to_string()
}

/// Reads the binary from standard input into `DIR/concoord` (through a rename, so a running
/// replica keeps its file) and prints its `--version`.
pub fn install_binary(install_dir: &str) -> Result<String, SshError> {
    Ok(format!(
        r#"set -e
dir={dir}
mkdir -p "$dir"
cat > "$dir/concoord.new"
chmod 755 "$dir/concoord.new"
mv -f "$dir/concoord.new" "$dir/concoord"
"$dir/concoord" --version
"#,
        dir = quote(install_dir)?
    ))
}

/// Loads a `docker save` archive from standard input and prints the image's `--version`.
pub fn load_image(image: &str) -> Result<String, SshError> {
    Ok(format!(
        r#"set -e
docker load >/dev/null
docker run --rm {image} --version
"#,
        image = quote(image)?
    ))
}

/// Starts `concoord ARGS...` detached in the install directory (or a container of `image`
/// on the host's network, named after NAME and the install directory), logging to `logs/NAME.log`, and prints its PID (or `docker:ID`). Exits with
/// [`ALREADY_RUNNING`] or [`EXITED_AT_ONCE`] (printing the log's end on stderr) otherwise.
///
/// With `login_user`, a container runs as the login user rather than the image's own: it
/// must read the private files `setup --pki/--auth-file` wrote (mode 0600, the login user's).
pub fn start(
    install_dir: &str,
    name: &str,
    image: Option<&str>,
    login_user: bool,
    args: &[String],
) -> Result<String, SshError> {
    let user = if login_user {
        r#"--user "$(id -u):$(id -g)" "#
    } else {
        ""
    };
    let words = args
        .iter()
        .map(|a| quote(a))
        .collect::<Result<Vec<_>, _>>()?
        .join(" ");
    let launch = match image {
        None => format!(
            r#"if command -v setsid >/dev/null 2>&1; then detach=setsid; else detach=; fi
CONCOORD_CONFIG_DIR="$PWD/config" $detach nohup "$PWD/concoord" {words} > "$log" 2>&1 < /dev/null &
id=$!"#
        ),
        Some(image) => format!(
            r#"container="concoord-$name-$(printf %s "$PWD" | cksum | cut -d ' ' -f 1)"
docker rm -f "$container" >/dev/null 2>&1 || true
cid=$(docker run -d --name "$container" --network host {user}-v "$PWD/config:/config" -e CONCOORD_CONFIG_DIR=/config {image} {words})
id="docker:$cid"
(docker logs -f "$cid" > "$log" 2>&1 < /dev/null &)"#,
            image = quote(image)?
        ),
    };
    Ok(format!(
        r#"set -e
{ALIVE}
dir={dir}
name={name}
mkdir -p "$dir/logs" "$dir/run" "$dir/config"
cd "$dir"
pidfile="run/$name.pid"
log="logs/$name.log"
if [ -f "$pidfile" ] && alive "$(cat "$pidfile")"; then
  echo "$(cat "$pidfile")"
  exit {ALREADY_RUNNING}
fi
{launch}
echo "$id" > "$pidfile"
sleep 1
if ! alive "$id"; then
  rm -f "$pidfile"
  tail -n 20 "$log" >&2 || true
  exit {EXITED_AT_ONCE}
fi
echo "$id"
echo "$PWD/$log"
"#,
        dir = quote(install_dir)?,
        name = quote(name)?,
    ))
}

/// Stops what was started from the install directory (only `NAME` when given): TERM, then
/// KILL after 5 s. Prints `stopped NAME ID` or `gone NAME ID` (it had already exited) per
/// PID file, and removes the file.
pub fn stop(install_dir: &str, only: Option<&str>) -> Result<String, SshError> {
    Ok(format!(
        r#"{ALIVE}
dir={dir}
only={only}
cd "$dir/run" 2>/dev/null || exit 0
for f in *.pid; do
  [ -f "$f" ] || continue
  name=${{f%.pid}}
  if [ -n "$only" ] && [ "$name" != "$only" ]; then continue; fi
  id=$(cat "$f")
  if alive "$id"; then
    case "$id" in
      docker:*) docker rm -f "${{id#docker:}}" >/dev/null 2>&1 || true ;;
      *) kill "$id" 2>/dev/null || true
         i=0
         while alive "$id" && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
         if alive "$id"; then kill -9 "$id" 2>/dev/null || true; fi ;;
    esac
    echo "stopped $name $id"
  else
    echo "gone $name $id"
  fi
  rm -f "$f"
done
"#,
        dir = quote(install_dir)?,
        only = quote(only.unwrap_or(""))?,
    ))
}

/// Lists what runs: `NAME ID running|exited` per PID file.
pub fn list(install_dir: &str) -> Result<String, SshError> {
    Ok(format!(
        r#"{ALIVE}
cd {dir}/run 2>/dev/null || exit 0
for f in *.pid; do
  [ -f "$f" ] || continue
  id=$(cat "$f")
  if alive "$id"; then state=running; else state=exited; fi
  echo "${{f%.pid}} $id $state"
done
"#,
        dir = quote(install_dir)?,
    ))
}

/// Writes standard input to `DIR/config/FILE` with mode 0600 (through a 0600 temporary file
/// and a rename, as `concoord route53id` does locally) and prints the file's full path.
pub fn write_private(install_dir: &str, file: &str) -> Result<String, SshError> {
    Ok(format!(
        r#"set -e
umask 077
dir={dir}
mkdir -p "$dir/config"
cd "$dir/config"
rm -f {file}.tmp
cat > {file}.tmp
chmod 600 {file}.tmp
mv -f {file}.tmp {file}
echo "$PWD/"{file}
"#,
        dir = quote(install_dir)?,
        file = quote(file)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Runs a script with the local sh, as ssh would run it remotely.
    fn sh(script: &str) -> std::process::Output {
        Command::new("sh").arg("-c").arg(script).output().unwrap()
    }

    #[test]
    fn start_passes_arguments_unchanged_and_stop_ends_the_process() {
        let dir = std::env::temp_dir().join(format!("concoord scripts {}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A stand-in "concoord" that prints its arguments one per line, then waits (its
        // command line names concoord, as `alive` wants).
        let fake = dir.join("concoord");
        std::fs::write(
            &fake,
            "#!/bin/sh\nfor a in \"$@\"; do echo \"[$a]\"; done\necho \"cfg=$CONCOORD_CONFIG_DIR\"\ntrap 'kill $s; exit 0' TERM\nsleep 30 & s=$!\nwait $s\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.to_str().unwrap();
        let args: Vec<String> = ["replica", "it's", "a \"b\"", "$HOME", "`x`", "; true"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = sh(&start(d, "replica-1", None, false, &args).unwrap());
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let pid: u32 = stdout.lines().next().unwrap().trim().parse().unwrap();
        let log = std::fs::read_to_string(dir.join("logs/replica-1.log")).unwrap();
        assert!(
            log.contains("[replica]\n[it's]\n[a \"b\"]\n[$HOME]\n[`x`]\n[; true]\n"),
            "{log}"
        );
        assert!(log.contains(&format!("cfg={d}/config")), "{log}");
        // A second start under the same name is refused while the first runs.
        let again = sh(&start(d, "replica-1", None, false, &args).unwrap());
        assert_eq!(again.status.code(), Some(ALREADY_RUNNING));
        let listed = sh(&list(d).unwrap());
        assert_eq!(
            String::from_utf8_lossy(&listed.stdout).trim(),
            format!("replica-1 {pid} running")
        );
        let out = sh(&stop(d, None).unwrap());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("stopped replica-1 {pid}")
        );
        assert!(!dir.join("run/replica-1.pid").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_process_that_exits_at_once_is_reported_with_its_log() {
        let dir =
            std::env::temp_dir().join(format!("concoord-scripts-exit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("concoord");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'bind: address in use' >&2\nexit 1\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = sh(&start(dir.to_str().unwrap(), "replica-2", None, false, &[]).unwrap());
        assert_eq!(out.status.code(), Some(EXITED_AT_ONCE));
        assert!(String::from_utf8_lossy(&out.stderr).contains("address in use"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn private_file_is_0600() {
        let dir =
            std::env::temp_dir().join(format!("concoord-scripts-priv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let script = write_private(dir.to_str().unwrap(), "route53").unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"secret\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let path = dir.join("config/route53");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            path.to_str().unwrap()
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
