# encoding: utf-8
# The "agora" definition as a Picky 4.31 app (ours; recorded with it, see
# ../README.md). Mirrors index.toml in this directory.
require 'sinatra/base'
require 'csv'
require 'picky'

Picky.logger = Picky::Loggers::Concise.new STDOUT

class AgoraRows
  Row = Struct.new :id, :title, :maker, :tag, :place

  def initialize(path)
    @path = path
  end

  def each
    CSV.foreach(@path, headers: true, encoding: 'UTF-8') do |r|
      yield Row.new(r['id'], r['title'], r['maker'], r['tag'], r['place'])
    end
  end
end

AGORA_CSV = File.expand_path('agora.csv', __dir__)

AgoraIndex = Picky::Index.new :agora do
  key_format :to_i
  source { AgoraRows.new AGORA_CSV }
  indexing substitutes_characters_with: Picky::CharacterSubstituters::WestEuropean.new,
           removes_characters: /[^\p{L}\p{N}\s\-]/,
           splits_text_on:     /[\s\-]/
  category :title, qualifiers: [:title, :t, :name],
                   partial: Picky::Partial::Substring.new(from: 1)
  category :maker, qualifiers: [:maker, :m, :name],
                   partial: Picky::Partial::Substring.new(from: 1)
  category :tag,   qualifiers: [:tag, :t],
                   weight: Picky::Weights::Constant.new(2.5),
                   partial: Picky::Partial::None.new
  category :place, partial: Picky::Partial::Substring.new(from: 1)
end

AgoraSearch = Picky::Search.new AgoraIndex do
  searching substitutes_characters_with: Picky::CharacterSubstituters::WestEuropean.new,
            removes_characters: /[^\p{L}\p{N}\s\-\_\.\"\~\*\:\,|]/,
            splits_text_on:     /[\s\-]+/
  boost [:title, :maker] => +2,
        [:tag]           => +1
end

class AgoraApp < Sinatra::Application
  get '/agora' do
    results = AgoraSearch.search params[:query], params[:ids] || 20, params[:offset] || 0
    Picky.logger.info results
    results.to_json
  end
end
