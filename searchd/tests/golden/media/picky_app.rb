# encoding: utf-8
# The "media" definition as a Picky 4.31 app (ours; recorded with it, see
# ../README.md): three indexes (books, films, music), one Search over all
# three (Picky's Search.new(books, films, music)) per set of Search
# options, each at its own route. Mirrors books.toml, films.toml,
# music.toml (the indexes) and plain.toml, max.toml, …, all.toml (the
# searches) in this directory.
require 'sinatra/base'
require 'csv'
require 'picky'

Picky.logger = Picky::Loggers::Concise.new STDOUT

class MediaRows
  def initialize(path, *columns)
    @path = path
    @row = Struct.new(:id, *columns)
  end

  def each
    CSV.foreach(@path, headers: true, encoding: 'UTF-8') do |r|
      yield @row.new(r['id'], *@row.members.drop(1).map { |c| r[c.to_s] })
    end
  end
end

def media_csv(name)
  File.expand_path(name, __dir__)
end

# Integer ids 1..50.
BooksIndex = Picky::Index.new :books do
  key_format :to_i
  source { MediaRows.new media_csv('books.csv'), :title, :author, :year }
  indexing removes_characters: /[^\p{L}\p{N}\s\-]/,
           splits_text_on:     /[\s\-]/
  category :title,  similarity: Picky::Similarity::DoubleMetaphone.new(3)
  category :author, qualifiers: [:author, :by, :a],
                    weight: Picky::Weights::Logarithmic.new(+1)
  category :year,   qualifiers: [:year, :y]
end

# Integer ids 1..45: the same ids as books (unique compares the values).
FilmsIndex = Picky::Index.new :films do
  key_format :to_i
  source { MediaRows.new media_csv('films.csv'), :title, :director, :year }
  indexing removes_characters: /[^\p{L}\p{N}\s\-]/,
           splits_text_on:     /[\s\-]/
  category :title
  category :director, qualifiers: [:director, :by, :d],
                      partial: Picky::Partial::Substring.new(from: 1)
  category :year,     qualifiers: [:year, :y]
end

# String ids "m01".."m40" (no key_format), answered as "tracks".
MusicIndex = Picky::Index.new :music do
  result_identifier 'tracks'
  source { MediaRows.new media_csv('music.csv'), :title, :artist }
  indexing removes_characters: /[^\p{L}\p{N}\s\-]/,
           splits_text_on:     /[\s\-]/
  category :title,  partial: Picky::Partial::None.new
  category :artist, qualifiers: [:artist, :by]
end

def media_search(&block)
  Picky::Search.new BooksIndex, FilmsIndex, MusicIndex do
    searching removes_characters: /[^\p{L}\p{N}\s\-\_\.\"\~\*\:\,|…]/,
              splits_text_on:     /[\s\-]+/
    boost [:title, :author] => +1, [:title] => +2, [:artist] => +0.5
    instance_eval(&block) if block
  end
end

SEARCHES = {
  'plain'      => media_search,
  'max'        => media_search { max_allocations 3 },
  'early'      => media_search { terminate_early },
  'early2'     => media_search { terminate_early 2 },
  'ignore'     => media_search { ignore :year, [:title, :director] },
  'only'       => media_search { only [:title], [:author, :title], [:director] },
  'unassigned' => media_search { ignore_unassigned_tokens },
  'unique'     => media_search,
  'all'        => media_search {
    max_allocations 4
    terminate_early 1
    ignore :year, [:artist]
    ignore_unassigned_tokens
  },
}
UNIQUE = %w[unique all]

class MediaApp < Sinatra::Application
  SEARCHES.each do |route, search|
    get "/#{route}" do
      options = UNIQUE.include?(route) ? { unique: true } : {}
      results = search.search params[:query], params[:ids] || 20, params[:offset] || 0, options
      Picky.logger.info results
      results.to_json
    end
  end
end
