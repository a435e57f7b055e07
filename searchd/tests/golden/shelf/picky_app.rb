# encoding: utf-8
# The "shelf" definition as a Picky 4.31 app (ours; recorded with it, see
# ../README.md). Mirrors index.toml in this directory.
require 'sinatra/base'
require 'csv'
require 'picky'

Picky.logger = Picky::Loggers::Concise.new STDOUT

class ShelfRows
  Row = Struct.new :id, :title, :author, :genre, :stock, :format

  def initialize(path)
    @path = path
  end

  def each
    CSV.foreach(@path, headers: true, encoding: 'UTF-8') do |r|
      yield Row.new(r['id'], r['title'], r['author'], r['genre'], r['stock'], r['format'])
    end
  end
end

SHELF_CSV = File.expand_path('shelf.csv', __dir__)

ShelfIndex = Picky::Index.new :shelf do
  key_format :to_i
  source { ShelfRows.new SHELF_CSV }
  indexing removes_characters: /[^\p{L}\p{N}\s\-]/,
           splits_text_on:     /[\s\-]/
  category :title,  similarity: Picky::Similarity::DoubleMetaphone.new(2)
  category :author, partial: Picky::Partial::Substring.new(from: 1),
                    weight: 2
  category :genre,  weight: Picky::Weights::Logarithmic.new(0.5)
  category :stock,  qualifiers: [:stock, :s],
                    partial: Picky::Partial::None.new,
                    weight: Picky::Weights::Constant.new(2)
  category :format, qualifiers: [:format, :f],
                    weight: Picky::Weights::Constant.new(1)
end

ShelfSearch = Picky::Search.new ShelfIndex do
  searching removes_characters: /[^\p{L}\p{N}\s\-\_\.\"\~\*\:\,|…]/,
            splits_text_on:     /[\s\-]+/
  boost [:stock, :format] => +3,
        [:title]          => +0.25,
        [:format]         => -1
end

class ShelfApp < Sinatra::Application
  get '/shelf' do
    results = ShelfSearch.search params[:query], params[:ids] || 20, params[:offset] || 0
    Picky.logger.info results
    results.to_json
  end
end
