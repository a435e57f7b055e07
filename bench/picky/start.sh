#!/usr/bin/env bash
# Start the reference Picky (Ruby) "books" server for benchmarks and
# side-by-side comparisons with searchd.
#
# Usage:
#   PICKY_SRC=/path/to/picky bench/picky/start.sh [PORT] [WORKERS] [THREADS]
#   bench/picky/start.sh /path/to/picky [PORT] [WORKERS] [THREADS]
#
#   PICKY_SRC  an extracted floere/picky tree (4.31.x; the directory holding
#              server/ and generators/). May also be given as first argument.
#   PORT       TCP port (default 4569). Binds 127.0.0.1 only.
#   WORKERS    puma cluster workers (default 2; 0 = single mode, no fork)
#   THREADS    puma threads per worker (default 1)
#
# Environment:
#   PICKY_APP_DIR  generated app, index files and logs
#                  (default ${TMPDIR:-/tmp}/picky-bench-PORT)
#   PICKY_CSV      books CSV (default: images/books/books.csv of this repo)
#   PICKY_RACK_ENV rack/picky environment (default production)
#
# Prints the PID of the puma master on stdout once GET /books answers;
# stop the server with `kill PID`. Needs the Debian packages installed by
# bench/picky/deps.sh. The app definition is the same as the one used to
# record searchd/tests/golden/ (Picky's server/sinatra prototype settings).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

if [ $# -ge 1 ] && [ -d "$1" ]; then
  PICKY_SRC=$1
  shift
fi
: "${PICKY_SRC:?set PICKY_SRC to an extracted floere/picky tree (or pass it as first argument)}"

PORT=${1:-4569}
WORKERS=${2:-2}
THREADS=${3:-1}
case "$PORT$WORKERS$THREADS" in
  *[!0-9]*) echo "PORT, WORKERS and THREADS must be numbers" >&2; exit 2 ;;
esac

SRC=$(cd "$PICKY_SRC" && pwd)
LIB="$SRC/server/lib"
APP=${PICKY_APP_DIR:-${TMPDIR:-/tmp}/picky-bench-$PORT}
CSV_SRC=${PICKY_CSV:-$REPO/images/books/books.csv}
RACK_ENV=${PICKY_RACK_ENV:-production}
export RACK_ENV PICKY_ENV=$RACK_ENV

for tool in ruby puma make gcc curl; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool (run bench/picky/deps.sh)" >&2; exit 1; }
done
[ -d "$LIB/picky" ] || { echo "no server/lib/picky under $SRC" >&2; exit 1; }
[ -f "$CSV_SRC" ] || { echo "no books CSV at $CSV_SRC" >&2; exit 1; }

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "port $PORT is already in use" >&2
  exit 1
fi

# Picky's C extension (intersection routine), built once into the tree.
if [ ! -f "$LIB/picky/picky.so" ]; then
  (
    cd "$SRC/server/ext/picky"
    ruby extconf.rb
    make
    cp picky.so "$LIB/picky/picky.so"
  ) >/dev/null 2>&1 || { echo "building picky.so failed" >&2; exit 1; }
fi

mkdir -p "$APP/data" "$APP/log"
cp "$CSV_SRC" "$APP/data/library.csv"

cat > "$APP/books_app.rb" <<'RUBY'
# encoding: utf-8
require 'sinatra/base'
require 'csv'
require 'picky'

Picky.logger = Picky::Loggers::Concise.new STDOUT

# One record per CSV line, first four columns (id, title, author, year).
class LibraryRows
  Row = Struct.new :id, :title, :author, :year

  def initialize(path)
    @path = path
  end

  def each
    CSV.foreach(@path) { |row| yield Row.new(*row[0..3]) }
  end
end

LIBRARY_CSV = File.expand_path('data/library.csv', __dir__)

BooksIndex = Picky::Index.new :books do
  key_format :to_i
  source { LibraryRows.new LIBRARY_CSV }
  indexing removes_characters: /[^a-z0-9\s\/\-\_\:\"\&\.]/i,
           stopwords:          /\b(and|the|of|it|in|for)\b/i,
           splits_text_on:     /[\s\/\-\_\:\"\&\.]/
  category :title,
           similarity: Picky::Similarity::DoubleMetaphone.new(3),
           partial:    Picky::Partial::Substring.new(from: 1)
  category :author, partial: Picky::Partial::Substring.new(from: 1)
  category :year,   partial: Picky::Partial::None.new
end

BooksSearch = Picky::Search.new BooksIndex do
  searching substitutes_characters_with: Picky::CharacterSubstituters::WestEuropean.new,
            removes_characters: /[^\p{L}\p{N}\s\/\-\_\&\.\"\~\*\:\,|]/i,
            stopwords:          /\b(and|the|of|it|in|for)\b/i,
            splits_text_on:     /[\s\/\-\&]+/
  boost [:title, :author] => +3,
        [:title]          => +1
end

class BooksApp < Sinatra::Application
  get '/books' do
    results = BooksSearch.search params[:query], params[:ids] || 20, params[:offset] || 0
    Picky.logger.info results
    results.to_json
  end
end
RUBY

cat > "$APP/config.ru" <<'RUBY'
require File.expand_path('books_app', __dir__)
Picky::Indexes.load
run BooksApp
RUBY

# Index ($APP/index/$RACK_ENV/books/*), as `rake index` would.
(cd "$APP" && RUBYLIB="$LIB" ruby -e 'require "./books_app"; Picky::Indexes.index') \
  >"$APP/log/index.log" 2>&1 || { echo "indexing failed, see $APP/log/index.log" >&2; exit 1; }

ARGS=(-b "tcp://127.0.0.1:$PORT" -t "$THREADS:$THREADS" -e "$RACK_ENV")
if [ "$WORKERS" -gt 0 ]; then
  ARGS+=(-w "$WORKERS" --preload)
fi
cd "$APP"
RUBYLIB="$LIB" nohup puma "${ARGS[@]}" config.ru >"$APP/log/puma.log" 2>&1 </dev/null &
PID=$!

for _ in $(seq 1 120); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/books?query=alan" 2>/dev/null; then
    echo "$PID"
    exit 0
  fi
  kill -0 "$PID" 2>/dev/null || { echo "puma exited, see $APP/log/puma.log" >&2; exit 1; }
  sleep 0.5
done
kill "$PID" 2>/dev/null || true
echo "server did not come up within 60 s, see $APP/log/puma.log" >&2
exit 1
