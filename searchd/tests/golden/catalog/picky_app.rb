# encoding: utf-8
# The "catalog" definition as a Picky 4.31 app (ours; recorded with it, see
# ../README.md): one index, one Search per set of Search options, each at
# its own route. Mirrors the *.toml files in this directory (same index,
# each with its [search] section).
require 'sinatra/base'
require 'csv'
require 'picky'

Picky.logger = Picky::Loggers::Concise.new STDOUT

class CatalogRows
  Row = Struct.new :id, :title, :author, :blurb

  def initialize(path)
    @path = path
  end

  def each
    CSV.foreach(@path, headers: true, encoding: 'UTF-8') do |r|
      yield Row.new(r['id'], r['title'], r['author'], r['blurb'])
    end
  end
end

CATALOG_CSV = File.expand_path('catalog.csv', __dir__)

CatalogIndex = Picky::Index.new :catalog do
  key_format :to_i
  source { CatalogRows.new CATALOG_CSV }
  indexing removes_characters: /[^\p{L}\p{N}\s\-]/,
           splits_text_on:     /[\s\-]/
  category :title
  category :author, partial: Picky::Partial::Substring.new(from: 1)
  category :blurb
end

def catalog_search(&block)
  Picky::Search.new CatalogIndex do
    searching removes_characters: /[^\p{L}\p{N}\s\-\_\.\"\~\*\:\,|…]/,
              splits_text_on:     /[\s\-]+/
    boost [:title, :author] => +1
    instance_eval(&block) if block
  end
end

SEARCHES = {
  'plain'      => catalog_search,
  'max'        => catalog_search { max_allocations 3 },
  'early'      => catalog_search { terminate_early },
  'early2'     => catalog_search { terminate_early 2 },
  'ignore'     => catalog_search { ignore :blurb, [:title, :author] },
  'only'       => catalog_search { only [:title], [:author, :title], [:blurb, :author] },
  'unassigned' => catalog_search { ignore_unassigned_tokens },
  'unique'     => catalog_search,
  'all'        => catalog_search {
    max_allocations 4
    terminate_early 1
    ignore :blurb, [:author]
    ignore_unassigned_tokens
  },
}
UNIQUE = %w[unique all]

class CatalogApp < Sinatra::Application
  # Facets (Picky's Search#facets) of the plain search and of the one with
  # every option: filter (absent: none; present, even empty: a filter),
  # at_least (to_i), counts=false for the words only.
  %w[plain all].each do |route|
    get "/#{route}/facets/:category" do
      options = { counts: params[:counts] != 'false' }
      options[:filter] = params[:filter] if params.key?('filter')
      options[:at_least] = params[:at_least].to_i if params[:at_least]
      SEARCHES[route].facets(params[:category].to_sym, options).to_json
    end
  end

  SEARCHES.each do |route, search|
    get "/#{route}" do
      options = UNIQUE.include?(route) ? { unique: true } : {}
      results = search.search params[:query], params[:ids] || 20, params[:offset] || 0, options
      Picky.logger.info results
      results.to_json
    end
  end
end
