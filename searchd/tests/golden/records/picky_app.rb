# encoding: utf-8
# The "records" definition as a Picky 4.31 app (ours; recorded with it, see
# ../README.md). Mirrors index.toml in this directory.
require 'sinatra/base'
require 'csv'
require 'picky'

Picky.logger = Picky::Loggers::Concise.new STDOUT

class RecordRows
  Row = Struct.new :id, :title, :artist, :year, :catalog, :label

  def initialize(path)
    @path = path
  end

  def each
    CSV.foreach(@path, headers: true, encoding: 'UTF-8') do |r|
      yield Row.new(r['id'], r['title'], r['artist'], r['year'], r['catalog'], r['label'])
    end
  end
end

RECORDS_CSV = File.expand_path('records.csv', __dir__)

RecordsIndex = Picky::Index.new :records do
  key_format :to_i
  source { RecordRows.new RECORDS_CSV }
  indexing removes_characters: /[^\p{L}\p{N}\s\-]/,
           splits_text_on:     /[\s\-]/
  category :title,   qualifiers: [:title, :name]
  category :artist,  qualifiers: [:artist, :name],
                     partial: Picky::Partial::Substring.new(from: 1)
  category :year,    qualifiers: [:year, :y, :n],
                     weight: Picky::Weights::Constant.new(1.5),
                     partial: Picky::Partial::None.new
  category :catalog, qualifiers: [:catalog, :c, :n],
                     partial: Picky::Partial::None.new
  category :label,   qualifiers: [:label, :l],
                     weight: Picky::Weights::Constant.new,
                     partial: Picky::Partial::Substring.new(from: 1)
end

RecordsSearch = Picky::Search.new RecordsIndex do
  searching removes_characters: /[^\p{L}\p{N}\s\-\_\.\"\~\*\:\,|…]/,
            splits_text_on:     /[\s\-]+/
  boost [:title, :year] => +1,
        [:year]         => +0.5
end

class RecordsApp < Sinatra::Application
  get '/records' do
    results = RecordsSearch.search params[:query], params[:ids] || 20, params[:offset] || 0
    Picky.logger.info results
    results.to_json
  end
end
