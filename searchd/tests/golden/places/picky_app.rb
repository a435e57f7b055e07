# encoding: utf-8
# The "places" definition as a Picky 4.31 app (ours; recorded with it, see
# ../README.md): Picky's ranged categories (ranged_category) and geo
# categories (geo_categories) over one index, one Search per route.
# Mirrors index.toml (route /plain) and boosted.toml (route /boosted).
#
# Needs the two fixes in picky_ranged_fixes.patch: Picky 4.31.3 cannot
# index a ranged category under Ruby 3, and a server that loads the index
# shifts the grid a second time (see ../README.md).
require 'sinatra/base'
require 'csv'
require 'picky'

Picky.logger = Picky::Loggers::Concise.new STDOUT

class PlacesRows
  Row = Struct.new :id, :name, :city, :elevation, :lat, :lng

  def initialize(path)
    @path = path
  end

  def each
    CSV.foreach(@path, headers: true, encoding: 'UTF-8') do |r|
      yield Row.new(r['id'], r['name'], r['city'], r['elevation'], r['lat'], r['lng'])
    end
  end
end

PLACES_CSV = File.expand_path('places.csv', __dir__)

PlacesIndex = Picky::Index.new :places do
  key_format :to_i
  source { PlacesRows.new PLACES_CSV }
  # Removes '.', '+', ',' and '/' and splits on '-': the ranged categories
  # do not use it (Category::Location#tokenizer is Picky's default
  # Tokenizer.new: split on whitespace, downcase, nothing removed).
  indexing removes_characters: /[^\p{L}\p{N}\s\-]/,
           splits_text_on:     /[\s\-]/
  category :name
  category :city
  ranged_category :elevation, 100, precision: 2
  ranged_category :level, 25, anchor: 5.0, from: :elevation, qualifiers: [:level, :lv]
  geo_categories :north, :east, 2.5, precision: 3, lat_from: :lat, lng_from: :lng
end

def places_search(&block)
  Picky::Search.new PlacesIndex do
    # Keeps '-' (no split on it: "-28" stays one negative word) and '.'.
    searching removes_characters: /[^\p{L}\p{N}\s\-\_\.\"\~\*\:\,|…]/,
              splits_text_on:     /\s+/
    instance_eval(&block) if block
  end
end

SEARCHES = {
  'plain'   => places_search,
  'boosted' => places_search {
    boost [:north, :east] => +1, [:elevation] => -0.5, [:name] => +2
    max_allocations 6
  },
}

class PlacesApp < Sinatra::Application
  SEARCHES.each do |route, search|
    get "/#{route}" do
      results = search.search params[:query], params[:ids] || 20, params[:offset] || 0
      Picky.logger.info results
      results.to_json
    end
  end
end
