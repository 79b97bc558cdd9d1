# Sourced by the other scripts: where taxistream keeps tools and build output
# outside the clone, so fresh clones (CI) reuse them instead of rebuilding.
TAXISTREAM_HOME="${TAXISTREAM_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/taxistream}"
TOOLS_BIN="$TAXISTREAM_HOME/bin"
TOOLS_VENV="$TAXISTREAM_HOME/venv"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TAXISTREAM_HOME/target}"
export PATH="$TOOLS_BIN:$TOOLS_VENV/bin:$TAXISTREAM_HOME/tansu/bin:$HOME/.cargo/bin:$PATH"
