#!/usr/bin/env bash
# Index and serve one of our Picky app definitions (agora/, records/) with
# the real Picky, for recording reference answers (see README.md).
#
# Usage: run_picky_app.sh PICKY_TREE DEF_DIR NAME PORT
#
#   PICKY_TREE  an extracted floere/picky snapshot whose server/lib/picky has
#               picky.so built (/work/shared/picky/run_picky.sh builds it)
#   DEF_DIR     a directory with picky_app.rb and its data, CSV or JSON Lines
#               (e.g. agora/)
#   NAME        the app's route and index name (agora)
#   PORT        TCP port; puma binds 127.0.0.1 only
#
# Copies DEF_DIR into a temp dir, indexes there, starts puma (single mode,
# one thread, RACK_ENV=production) and prints "PID APP_DIR" once GET /NAME
# answers. Stop it with kill PID.
set -euo pipefail
TREE=$(cd "$1" && pwd); SRC=$(cd "$2" && pwd); NAME=$3; PORT=$4
LIB="$TREE/server/lib"
[ -f "$LIB/picky/picky.so" ] || { echo "build picky.so first (run_picky.sh does)" >&2; exit 1; }
APP=$(mktemp -d "${TMPDIR:-/tmp}/picky-$NAME-XXXX")
shopt -s nullglob
cp "$SRC"/picky_app.rb "$SRC"/*.csv "$SRC"/*.jsonl "$APP"/
mkdir -p "$APP/log"
cat > "$APP/config.ru" <<'RUBY'
require File.expand_path('picky_app', __dir__)
Picky::Indexes.load
run Sinatra::Application.subclasses.last
RUBY
export RACK_ENV=production PICKY_ENV=production
(cd "$APP" && RUBYLIB="$LIB" ruby -e 'require "./picky_app"; Picky::Indexes.index' >"$APP/log/index.log" 2>&1) \
  || { echo "indexing failed, see $APP/log/index.log" >&2; exit 1; }
cd "$APP"
RUBYLIB="$LIB" nohup puma -b "tcp://127.0.0.1:$PORT" -t 1:1 -e production config.ru >"$APP/log/puma.log" 2>&1 &
PID=$!
for _ in $(seq 1 120); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/$NAME?query=a" 2>/dev/null; then
    echo "$PID $APP"
    exit 0
  fi
  kill -0 "$PID" 2>/dev/null || { echo "puma exited, see $APP/log/puma.log" >&2; exit 1; }
  sleep 0.5
done
echo "no answer, see $APP/log/puma.log" >&2
kill "$PID"
exit 1
