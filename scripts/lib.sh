# Shared helpers of the scripts: installing what a fresh machine lacks, free ports, cleanup.
# Sourced, not run.

# Where downloads and builds that outlive a clone are cached (venvs, cargo-installed tools).
TRAILS_CACHE="${TRAILS_CACHE:-$HOME/.cache/trails}"
mkdir -p "$TRAILS_CACHE"

step() { printf '\n==> %s\n' "$*"; }

ensure_rust_components() {
  if ! command -v cargo > /dev/null; then
    echo "cargo not found: this machine kind ships a Rust toolchain; install rustup first" >&2
    exit 1
  fi
  for component in rustfmt clippy; do
    if ! rustup component list --installed 2> /dev/null | grep -q "^$component"; then
      step "rustup component add $component"
      rustup component add "$component"
    fi
  done
}

# Prints a TCP port nobody listens on at the moment.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Makes a new virtualenv at $1 (python3-venv installed when missing) with the packages $2...,
# with $VENV_PYTHON (default python3).
fresh_venv() {
  local venv="$1" python="${VENV_PYTHON:-python3}"
  shift
  if ! "$python" -m venv --help > /dev/null 2>&1 || ! "$python" -c 'import ensurepip' 2> /dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv > /dev/null
  fi
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
}

# The moto AWS emulator, in a virtualenv cached outside the clone. Sets MOTO_PYTHON, the venv's
# python that runs scripts/moto_server.py (moto plus the few operations trails needs it lacks).
MOTO_VERSION="5.2.5"
ensure_moto() {
  local venv="$TRAILS_CACHE/venv"
  MOTO_PYTHON="$venv/bin/python"
  if [ -x "$venv/bin/moto_server" ] && "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2> /dev/null; then
    return
  fi
  step "installing moto[server]==$MOTO_VERSION into $venv"
  fresh_venv "$venv" "moto[server]==$MOTO_VERSION"
}

# ClickHouse for the tests: chDB (the ClickHouse engine as a Python package; no recent enough
# ClickHouse server package exists here) in its own virtualenv cached outside the clone;
# scripts/clickhouse_http.py serves it over ClickHouse's HTTP interface. Sets CHDB_PYTHON.
CHDB_VERSION="4.4.0"
CHDB_CORE_VERSION="26.9.0"
ensure_chdb() {
  local venv="$TRAILS_CACHE/chdb-venv"
  CHDB_PYTHON="$venv/bin/python"
  if [ -x "$CHDB_PYTHON" ] && [ "$(cat "$venv/trails-version" 2> /dev/null)" = "$CHDB_VERSION/$CHDB_CORE_VERSION" ]; then
    return
  fi
  step "installing chdb==$CHDB_VERSION into $venv (once; cached)"
  fresh_venv "$venv" "chdb==$CHDB_VERSION" "chdb-core==$CHDB_CORE_VERSION"
  "$CHDB_PYTHON" -c 'from chdb import session' # fails the run here if the engine cannot load
  echo "$CHDB_VERSION/$CHDB_CORE_VERSION" > "$venv/trails-version"
}

# schemathesis, the OpenAPI fuzzer the ingest contract test runs, in its own virtualenv cached
# outside the clone. Sets SCHEMATHESIS, its `st`, and SCHEMATHESIS_PHASES. On CPython 3.11 its
# coverage phase can crash inside the interpreter ("SystemError: AST constructor recursion depth
# mismatch", from Hypothesis describing a strategy), so a newer python is used when the machine
# has one; on 3.11 alone the coverage phase is left out and the run says so.
SCHEMATHESIS_VERSION="4.32.5"
ensure_schemathesis() {
  local venv="$TRAILS_CACHE/schemathesis-venv" python=""
  SCHEMATHESIS="$venv/bin/st"
  for candidate in python3.13 python3.12 "$HOME"/.pyenv/versions/3.13*/bin/python \
    "$HOME"/.pyenv/versions/3.12*/bin/python; do
    if command -v "$candidate" > /dev/null 2>&1 && "$candidate" -c 'import ensurepip' 2> /dev/null; then
      python="$candidate"
      break
    fi
  done
  local wanted="$SCHEMATHESIS_VERSION ${python:-python3}"
  if ! [ -x "$SCHEMATHESIS" ] || [ "$(cat "$venv/trails-version" 2> /dev/null)" != "$wanted" ]; then
    step "installing schemathesis==$SCHEMATHESIS_VERSION with ${python:-python3} into $venv (once; cached)"
    VENV_PYTHON="${python:-python3}" fresh_venv "$venv" "schemathesis==$SCHEMATHESIS_VERSION"
    "$SCHEMATHESIS" --version > /dev/null # fails the run here if it cannot start
    echo "$wanted" > "$venv/trails-version"
  fi
  if [ -n "$python" ]; then
    SCHEMATHESIS_PHASES="examples,coverage,fuzzing,stateful"
  else
    SCHEMATHESIS_PHASES="examples,fuzzing,stateful"
    echo "note: no python 3.12 or newer here; schemathesis runs without its coverage phase" >&2
  fi
}

# Installs Debian packages (apt-get update once per run).
APT_UPDATED=""
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    apt-get update -qq
    APT_UPDATED=1
  fi
  step "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" > /dev/null
}

# PostgreSQL's server binaries (the tests run initdb and postgres themselves), and openssl,
# which makes the certificates of the TLS tests.
ensure_postgres() {
  if ! ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1; then
    apt_install postgresql
  fi
  if ! command -v openssl > /dev/null; then
    apt_install openssl
  fi
}

# redis-server (the tests start their own).
ensure_redis() {
  if ! command -v redis-server > /dev/null; then
    apt_install redis-server
  fi
}

# The Kafka-compatible broker tansu, built once into the cache (about ten minutes on two
# cores), with in-memory storage (dynostore). Sets TANSU.
TANSU_VERSION="0.6.0"
ensure_tansu() {
  local root="$TRAILS_CACHE/tansu"
  TANSU="$root/bin/tansu"
  if [ -x "$TANSU" ] && [ "$(cat "$root/version" 2> /dev/null)" = "$TANSU_VERSION" ]; then
    return
  fi
  step "cargo install tansu $TANSU_VERSION into $root (once; cached)"
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore --root "$root" --quiet
  echo "$TANSU_VERSION" > "$root/version"
}

# One scratch directory per script run for server data and logs; stop_servers removes it.
scratch() {
  if [ -z "${SCRATCH:-}" ]; then
    SCRATCH="$(mktemp -d)"
    # PostgreSQL runs as the postgres user when we are root and must reach its directory.
    chmod 711 "$SCRATCH"
  fi
}

# Starts PostgreSQL in a fresh directory on a free port (as the postgres user when root, since
# PostgreSQL refuses root); sets PG_URL and PG_PID. stop_servers stops it.
start_postgres() {
  local bin dir port run=()
  bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  scratch
  dir="$SCRATCH/postgres"
  mkdir -p "$dir"
  port="$(free_port)"
  if [ "$(id -u)" = 0 ]; then
    chown -R postgres:postgres "$dir"
    run=(setpriv --reuid=postgres --regid=postgres --init-groups)
  fi
  "${run[@]}" "$bin/initdb" -D "$dir/data" -U trails -A trust -E UTF8 --no-sync > "$dir/initdb.log" 2>&1
  "${run[@]}" "$bin/postgres" -D "$dir/data" -p "$port" -k "$dir" -c listen_addresses=127.0.0.1 \
    -c fsync=off -c synchronous_commit=off > "$dir/postgres.log" 2>&1 &
  PG_PID=$!
  PG_URL="postgres://trails@127.0.0.1:$port/postgres"
  wait_port "$port" "$PG_PID" "$dir/postgres.log"
}

# Starts redis-server on a free port; sets REDIS_URL and REDIS_PID.
start_redis() {
  local port log
  port="$(free_port)"
  scratch
  log="$SCRATCH/redis.log"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no > "$log" 2>&1 &
  REDIS_PID=$!
  REDIS_URL="redis://127.0.0.1:$port"
  wait_port "$port" "$REDIS_PID" "$log"
}

# Starts tansu with in-memory storage on a free port; sets KAFKA_BROKERS and TANSU_PID.
start_tansu() {
  local port log
  port="$(free_port)"
  scratch
  log="$SCRATCH/tansu.log"
  RUST_LOG=warn "$TANSU" broker --storage-engine memory://tansu/ \
    --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" > "$log" 2>&1 &
  TANSU_PID=$!
  KAFKA_BROKERS="127.0.0.1:$port"
  wait_port "$port" "$TANSU_PID" "$log"
}

# Waits until PORT accepts connections while PID lives; prints LOG and exits otherwise.
wait_port() {
  for _ in $(seq 600); do
    if python3 -c "import socket, sys; socket.create_connection(('127.0.0.1', $1), 0.5)" 2> /dev/null; then
      return
    fi
    if ! kill -0 "$2" 2> /dev/null; then
      echo "a server exited while starting; its log:" >&2
      cat "$3" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "nothing listened on port $1 within 60s; log:" >&2
  cat "$3" >&2
  exit 1
}

# Stops whatever start_moto, start_postgres, start_redis and start_tansu started and removes
# their data and logs.
stop_servers() {
  stop_moto
  stop_pid "${TANSU_PID:-}"
  stop_pid "${REDIS_PID:-}"
  stop_pid "${PG_PID:-}"
  if [ -n "${SCRATCH:-}" ]; then
    rm -rf "$SCRATCH"
  fi
}

stop_pid() {
  if [ -n "${1:-}" ]; then
    kill -INT "$1" 2> /dev/null || true
    wait "$1" 2> /dev/null || true
  fi
}

# Starts moto on a free loopback port; sets MOTO_URL and MOTO_PID. Stop it with stop_moto.
start_moto() {
  local port log
  port="$(free_port)"
  scratch
  log="$SCRATCH/moto-$port.log"
  "$MOTO_PYTHON" "$(dirname "${BASH_SOURCE[0]}")/moto_server.py" -H 127.0.0.1 -p "$port" > "$log" 2>&1 &
  MOTO_PID=$!
  MOTO_URL="http://127.0.0.1:$port"
  for _ in $(seq 300); do
    if python3 -c "import urllib.request, sys; urllib.request.urlopen('$MOTO_URL/moto-api/', timeout=1)" 2> /dev/null; then
      return
    fi
    if ! kill -0 "$MOTO_PID" 2> /dev/null; then
      echo "moto exited while starting; its log:" >&2
      cat "$log" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "moto did not answer on $MOTO_URL within 60s" >&2
  exit 1
}

stop_moto() {
  if [ -n "${MOTO_PID:-}" ]; then
    kill "$MOTO_PID" 2> /dev/null || true
    wait "$MOTO_PID" 2> /dev/null || true
    MOTO_PID=""
  fi
}
