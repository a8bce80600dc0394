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
