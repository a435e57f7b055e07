# encoding: utf-8
# The "dupes" definition as a Picky 4.31 app (ours; recorded with it, see
# ../README.md). Mirrors index.toml in this directory.
require 'sinatra/base'
require 'csv'
require 'picky'

Picky.logger = Picky::Loggers::Concise.new STDOUT

class DupeRows
  Row = Struct.new :id, :title, :author

  def initialize(path)
    @path = path
  end

  def each
    CSV.foreach(@path, headers: true, encoding: 'UTF-8') do |r|
      yield Row.new(r['id'], r['title'], r['author'])
    end
  end
end

DUPES_CSV = File.expand_path('dupes.csv', __dir__)

DupesIndex = Picky::Index.new :dupes do
  key_format :to_i
  source { DupeRows.new DUPES_CSV }
  indexing removes_characters: /[^\p{L}\p{N}\s]/, splits_text_on: /\s/
  category :title, partial: Picky::Partial::Substring.new(from: 1),
                   similarity: Picky::Similarity::DoubleMetaphone.new(3)
  category :author
end

DupesSearch = Picky::Search.new DupesIndex do
  searching removes_characters: /[^\p{L}\p{N}\s\"\~\*\:\,|]/, splits_text_on: /\s+/
end

class DupesApp < Sinatra::Application
  get '/dupes' do
    results = DupesSearch.search params[:query], params[:ids] || 20, params[:offset] || 0
    Picky.logger.info results
    results.to_json
  end

  get '/dupes/facets/:category' do
    options = { counts: params[:counts] != 'false' }
    options[:filter] = params[:filter] if params.key?('filter')
    DupesSearch.facets(params[:category].to_sym, options).to_json
  end
end
