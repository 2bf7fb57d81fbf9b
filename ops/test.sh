#!/usr/bin/env bash
# Sets up whatever this machine is missing, then runs every test of the workspace.
#
#   ./ops/test.sh            # everything
#   ./ops/test.sh -p antcode-core   # extra arguments go to `cargo test`
#
# Needs: the Rust toolchain and Python 3. Installs (Debian, as root or with sudo) what is
# missing: uv, croniter, aiosmtpd, PyYAML, PostgreSQL, MariaDB, Redis, Chromium with chromedriver (for the browser tests),
# git and OpenSSH's sshd (the Git servers on loopback the Git project tests fetch from),
# Prometheus with promtool (Debian's prometheus) and kubernetes-validate (the ops pack's checks),
# and starts any of them that is not running.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[test]\033[0m %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
SUDO=""; if [ "$(id -u)" != 0 ] && have sudo; then SUDO="sudo"; fi
APT_UPDATED=""
apt_install() {
  have apt-get || { log "cannot install $* (no apt-get): install it yourself"; exit 1; }
  if [ -z "$APT_UPDATED" ]; then $SUDO apt-get update -qq >/dev/null; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  log "$2 did not come up on port $1"; exit 1
}

# --- commit convention (ops/hooks, CONTRIBUTING.md) -----------------------------------------
# Enables the commit-msg hook in a git checkout that has no hooks path yet, and checks the subject
# of every commit after the baseline (the commit that introduced the hook): older history is left
# as it is, and a shallow clone or a history without the baseline skips the check.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  if [ -z "$(git config --get core.hooksPath || true)" ]; then
    git config core.hooksPath ops/hooks && log "commit-msg hook enabled (git config core.hooksPath ops/hooks)"
  fi
  BASELINE="$(tr -d '[:space:]' < ops/hooks/baseline 2>/dev/null || true)"
  if [ "$(git rev-parse --is-shallow-repository)" = true ]; then
    log "shallow clone: commit subjects not checked"
  elif [ -z "$BASELINE" ] || ! git merge-base --is-ancestor "$BASELINE" HEAD 2>/dev/null; then
    log "baseline commit ${BASELINE:-(none)} not in this history: commit subjects not checked"
  else
    BAD=0
    while IFS= read -r subject; do
      ops/hooks/commit-msg --subject "$subject" || BAD=1
    done < <(git log --no-merges --format=%s "$BASELINE..HEAD")
    [ "$BAD" = 0 ] || { log "commit subjects above break the convention (CONTRIBUTING.md)"; exit 1; }
  fi
fi

# --- toolchains -----------------------------------------------------------------------------
have cargo || { log "cargo not found: install Rust from https://rustup.rs"; exit 1; }
have python3 || { log "python3 not found: apt-get install python3"; exit 1; }
if ! have uv; then
  log "installing uv (pip install uv)"
  python3 -m pip install --quiet uv 2>/dev/null || python3 -m pip install --quiet --user uv
  export PATH="$HOME/.local/bin:$PATH"
fi
have uv || { log "uv is still missing: pip install uv"; exit 1; }
# The cron reference test (core/tests/cron_reference.rs) compares our fire times with croniter's.
if ! python3 -c 'import croniter' 2>/dev/null; then
  log "installing croniter (pip install croniter)"
  python3 -m pip install --quiet croniter 2>/dev/null || python3 -m pip install --quiet --user croniter
fi
python3 -c 'import croniter' || { log "croniter is still missing: pip install croniter"; exit 1; }
# The notification tests (notify/tests/senders.rs) deliver mail to a real SMTP server: aiosmtpd.
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  log "installing aiosmtpd (pip install aiosmtpd)"
  python3 -m pip install --quiet aiosmtpd 2>/dev/null || python3 -m pip install --quiet --user aiosmtpd
fi
python3 -c 'import aiosmtpd' || { log "aiosmtpd is still missing: pip install aiosmtpd"; exit 1; }

# --- services (the tests talk to real engines on loopback) ------------------------------------
# The web UI's browser tests drive Debian's headless Chromium through chromedriver.
if ! { have chromedriver && have chromium; }; then
  log "installing chromium and chromium-driver (browser tests)"; apt_install chromium chromium-driver
fi
# A CJK font, so the zh-CN screenshots show Chinese rather than empty boxes.
if have fc-list && [ -z "$(fc-list :lang=zh 2>/dev/null)" ]; then
  log "installing fonts-noto-cjk (zh-CN screenshots)"; apt_install fonts-noto-cjk
fi

# Projects from Git are tested against `git http-backend`, `git daemon` and `sshd` on loopback.
if ! have git || [ ! -x "$(git --exec-path 2>/dev/null)/git-http-backend" ]; then
  log "installing git (Git project tests)"; apt_install git
fi
if [ ! -x /usr/sbin/sshd ] || ! have ssh-keygen; then
  log "installing openssh-server and openssh-client (Git over SSH tests)"; apt_install openssh-server openssh-client
fi

if ! port_open 6379; then
  have redis-server || { log "installing redis-server"; apt_install redis-server; }
  log "starting Redis"
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379 Redis
fi

if ! port_open 5432; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing PostgreSQL"; apt_install postgresql
    # The tests connect as postgres over TCP without a password (trust on loopback only).
    for hba in /etc/postgresql/*/main/pg_hba.conf; do
      $SUDO sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/; s/^(host\s+all\s+all\s+::1\/128\s+)\S+/\1trust/' "$hba"
    done
  fi
  log "starting PostgreSQL"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  wait_port 5432 PostgreSQL
fi

if ! port_open 3306; then
  if ! have mariadbd; then
    log "installing MariaDB"; apt_install mariadb-server
    MARIADB_FRESH=1
  fi
  log "starting MariaDB"
  $SUDO mkdir -p /run/mysqld && $SUDO chown mysql:mysql /run/mysqld 2>/dev/null || true
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
  wait_port 3306 MariaDB
  if [ -n "${MARIADB_FRESH:-}" ]; then
    # A fresh install lets root in only through the Unix socket; the tests use TCP.
    $SUDO mariadb -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;"
  fi
fi

# --- the compose file (ops/) --------------------------------------------------------------------
# Rendered for both worker modes and checked: every service gets exactly the variables it needs
# and no credential it must not see. `docker compose config` also runs when the plugin is there.
python3 -c 'import yaml' 2>/dev/null || {
  log "installing PyYAML (the compose check)"
  python3 -m pip install --quiet pyyaml 2>/dev/null || python3 -m pip install --quiet --user pyyaml
}
log "checking ops/docker-compose.yml"
python3 ops/scripts/check-compose.py
if docker compose version >/dev/null 2>&1; then
  for mode in direct gateway; do
    COMPOSE_PROFILES=$mode docker compose -f ops/docker-compose.yml --env-file ops/.env.example config -q
  done
fi

# --- the ops pack (ops/prometheus, ops/k8s) ----------------------------------------------------
# The alert rules are checked and unit-tested with promtool; the Kubernetes manifests are
# validated offline against the OpenAPI schemas kubernetes-validate ships. tests/ops_pack.rs
# checks the dashboards' and rules' metric names against the running processes, and has a real
# Prometheus scrape them for exemplars.
if ! have promtool || ! have prometheus; then
  log "installing Prometheus and promtool (apt-get install prometheus)"; apt_install prometheus
fi
log "checking ops/prometheus (promtool)"
promtool check config ops/prometheus/prometheus.yml >/dev/null
promtool check rules ops/prometheus/alerts.yml
promtool test rules ops/prometheus/alerts.test.yml
if ! have kubernetes-validate; then
  log "installing kubernetes-validate (pip install kubernetes-validate)"
  python3 -m pip install --quiet kubernetes-validate 2>/dev/null || python3 -m pip install --quiet --user kubernetes-validate
  export PATH="$HOME/.local/bin:$PATH"
fi
log "checking ops/k8s"
python3 ops/scripts/check-k8s.py

# --- the tests ----------------------------------------------------------------------------------
log "cargo test (workspace)"
OUT="$(mktemp)"
set +e
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$OUT"
STATUS=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (cargo's own last line is that of the last test binary).
grep -E '^test result:' "$OUT" | awk '{p += $4; f += $6} END {printf "%d passed, %d failed\n", p, f}'
rm -f "$OUT"
exit "$STATUS"
