# Prints, for each query string on stdin (one JSON string a line), what
# Picky's Sinatra app would get from it. See README.md.
require 'json'
require 'rack'
require 'sinatra/indifferent_hash'
def kind(v)
  case v when nil then "nil" when String then "string" when Array then "array" else "hash" end
end
def int(v, dflt)
  v = v.nil? ? dflt : v
  return {"error" => kind(v)} unless v.is_a?(String) || v.is_a?(Integer)
  i = v.to_i
  (i > 9223372036854775807 || i < -9223372036854775808) ? {"overflow" => i.to_s} : i
end
STDIN.each_line do |line|
  qs = JSON.parse(line)
  out = {"qs" => qs}
  begin
    h = Rack::Utils.default_query_parser.parse_nested_query(qs, '&;')
    params = Sinatra::IndifferentHash.new.merge!(h)
    q = params[:query]
    out["query_kind"] = kind(q)
    s = q.to_s
    if s.valid_encoding?
      out["query"] = s
    else
      out["query_bytes"] = s.b.unpack("C*")
    end
    out["ids"] = int(params[:ids], 20)
    out["offset"] = int(params[:offset], 0)
  rescue Rack::Utils::ParameterTypeError, Rack::Utils::InvalidParameterError => e
    out["status"] = 400
    out["message"] = e.message
  rescue => e
    out["status"] = 500
    out["error"] = e.class.name
  end
  puts JSON.generate(out)
end
