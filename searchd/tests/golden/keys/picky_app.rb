# encoding: utf-8
# The "keys" definitions as a Picky 4.31 app (ours; recorded with it, see
# ../README.md): the same JSON Lines data in three indexes that differ only
# in key_format (to_f, to_s, to_sym), all answering with the result
# identifier "items", each at its own route. Mirrors float.toml,
# string.toml and symbol.toml in this directory. `tags` are arrays of
# ready-made tokens (tokenize: false).
require 'sinatra/base'
require 'json'
require 'picky'

Picky.logger = Picky::Loggers::Concise.new STDOUT

class KeyRows
  Row = Struct.new :id, :title, :tags

  def initialize(path)
    @path = path
  end

  def each
    File.foreach(@path, encoding: 'UTF-8') do |line|
      next if line.strip.empty?
      r = JSON.parse(line)
      yield Row.new(r['id'], r['title'], r['tags'])
    end
  end
end

KEYS_JSONL = File.expand_path('keys.jsonl', __dir__)

def keys_index(name, format)
  Picky::Index.new name do
    key_format format
    result_identifier :items
    source { KeyRows.new KEYS_JSONL }
    indexing removes_characters: /[^\p{L}\p{N}\s]/, splits_text_on: /\s/
    category :title
    category :tags, tokenize: false
  end
end

ROUTES = {
  'float'  => keys_index(:keys_float, :to_f),
  'string' => keys_index(:keys_string, :to_s),
  'symbol' => keys_index(:keys_symbol, :to_sym),
}.transform_values do |index|
  Picky::Search.new(index) do
    searching removes_characters: /[^\p{L}\p{N}\s\"\~\*\:\,|]/, splits_text_on: /\s+/
  end
end

class KeysApp < Sinatra::Application
  ROUTES.each do |route, search|
    get "/#{route}" do
      results = search.search params[:query], params[:ids] || 20, params[:offset] || 0
      Picky.logger.info results
      results.to_json
    end
  end
end
