# encoding: utf-8
# The "streets" definition as a Picky 4.31 app (ours; recorded with it, see
# ../README.md). Mirrors index.toml in this directory.
require 'sinatra/base'
require 'csv'
require 'picky'

Picky.logger = Picky::Loggers::Concise.new STDOUT

class StreetRows
  Row = Struct.new :id, :street, :city, :tags

  def initialize(path)
    @path = path
  end

  def each
    CSV.foreach(@path, headers: true, encoding: 'UTF-8') do |r|
      yield Row.new(r['id'], r['street'], r['city'], r['tags'])
    end
  end
end

STREETS_CSV = File.expand_path('streets.csv', __dir__)

StreetsIndex = Picky::Index.new :streets do
  key_format :to_i
  source { StreetRows.new STREETS_CSV }
  indexing substitutes_characters_with: Picky::CharacterSubstituters::Polish.new,
           removes_characters: /[^\p{L}\p{N}\s\-,.]/,
           splits_text_on:     /[\s\-,]/,
           normalizes_words:   [[/\Ast\.?\z/i, 'sankt'], [/\Aul\.?\z/i, 'ulica'],
                                [/\A([a-z]+)strasse\z/i, '\1 str']],
           rejects_token_if:   lambda { |t| t.size < 2 }
  category :street, partial: Picky::Partial::Substring.new(from: 1)
  category :city
  category :tags, indexing: { splits_text_on: /,/ }
end

StreetsSearch = Picky::Search.new StreetsIndex do
  searching substitutes_characters_with: Picky::CharacterSubstituters::Polish.new,
            removes_characters: /[^\p{L}\p{N}\s\-\_\.\"\~\*\:\,|…]/,
            splits_text_on:     /[\s\-]+/,
            normalizes_words:   [[/\Ast\.?\z/i, 'sankt'], [/\Aul\.?\z/i, 'ulica']],
            rejects_token_if:   lambda { |t| t.size < 2 }
end

class StreetsApp < Sinatra::Application
  get '/streets' do
    results = StreetsSearch.search params[:query], params[:ids] || 20, params[:offset] || 0
    Picky.logger.info results
    results.to_json
  end
end
