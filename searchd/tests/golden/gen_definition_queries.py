#!/usr/bin/env python3
"""Writes the query lists replayed against Picky for our own definitions
(agora/agora_queries.jsonl, records/records_queries.jsonl,
shelf/shelf_queries.jsonl, catalog/catalog_queries.jsonl,
streets/streets_queries.jsonl, keys/keys_queries.jsonl,
dupes/dupes_queries.jsonl, media/media_queries.jsonl,
places/places_queries.jsonl next to this script): one JSON object a line, {"id","note","params":{...}}.

Usage: python3 gen_definition_queries.py   (re-running reproduces the files)
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))

AGORA = [
    # Greek capital sigma: Ruby downcases every Σ to σ, also word-final.
    ("sigma", q) for q in [
        "ΟΔΟΣ", "οδοσ", "οδος", "Οδός", "ΟΔΟΣ ΣΟΦΙΑΣ", "οδοσ σοφιασ", "οδος σοφιας",
        "ΟΔΟΣ\"", "ΟΔΟΣ*", "title:ΟΔΟΣ", "ΣΑΣ", "σας", "σασ", "Σ", "σ", "Σ\"", "ΣΣ",
        "ΝΑΞΟΣ", "ναξος", "ναξοσ", "place:ναξοσ", "ΚΑΛΟΓΕΡΑΣ", "καλογερας",
        "καλογερασ", "maker:ΚΑΛΟΓΕΡΑΣ", "ΠΑΡΑΔΟΣΙΑΚΟΣ ΤΡΑΧΑΝΑΣ",
        "παραδοσιακοσ τραχανασ", "ΜΑΝΟΥΣΟΣ\"", "ΣΙΣΥΦΟΣ", "Σίσυφος", "ΤΗΣ", "της",
        "ΣΑΣ ΠΡΟΣΦΕΡΟΥΜΕ", "ΟΔΟΣ|ΝΑΞΟΣ", "ΟΔΟΣ.", "ΟΔΟΣ,ΣΑΣ",
    ]
] + [
    # tag has a constant weight: every word is a candidate there.
    ("constant weight", q) for q in [
        "honey", "honey|wine", "honey|μελι", "μελι|κρασι", "μέλι|κρασί", "ΜΕΛΙ|ΚΡΑΣΙ",
        "olive|cheese", "tag:honey|wine", "t:olive|wine", "oil|olive", "naxos|honey",
        "zzz|honey", "honey|zzz", "honey|", "wine honey", "honey wine",
        "tag:honey wine", "olive oil", "oliv", "olive|oil crete", "m:gomez|muller",
        "gomez|zzz", "crete|zzz", "tag:zzz|honey", "tag:zzz", "zzz", "honey|wine\"",
        "honey~|wine",
    ]
] + [
    # "name" is listed by title and maker, "t" by title and tag.
    ("shared qualifier", q) for q in [
        "name:gomez", "name:οδοσ", "name:σοφιας", "t:μελι", "t:ελαιολαδο", "t:honey",
        "title,t:honey", "t,title:honey", "name,title:honey", "m:muller",
        "title:honey", "maker:σας", "name:σασ", "NAME:gomez", "T:honey", "name:",
        "t:hon", "t:honey\"", "name:and*",
    ]
]

AGORA_PAGED = [
    ("paging", {"query": "honey|μελι", "ids": "2", "offset": "1"}),
    ("paging", {"query": "honey|wine|olive", "ids": "3", "offset": "4"}),
    ("paging", {"query": "ΣΑΣ", "ids": "0"}),
]

RECORDS = [
    ("range over a constant weight", q) for q in [
        "year:1990…1995", "1990…1995", "y:1990…1995", "catalog:1990…1995",
        "c:1990…1995", "n:1990…1995", "year:1985…1987", "year:1991…1991",
        "year:1995…1990", "1990…1995 blue", "blue 1990…1995", "year:1990…1995 rock",
        "\"year:1990…1995\"", "year:1990…1995\"", "year:1956…1960", "1956…1960 blue",
        "year:1990…1995|2001", "y:1997|2001", "2001|1962", "1997", "2001 rock",
        "rock 2001", "label:a…c", "l:o…p", "1962", "n:1962", "year:1900…1999 jazz",
    ]
] + [
    ("constant weight 0", q) for q in [
        "blue", "blue note", "note", "label:blue", "l:blu", "columbia|verve",
        "verve|jazz", "jazz|zzz", "blue|zzz", "one|little", "records|zzz",
        "blue|rock|jazz",
    ]
] + [
    ("shared qualifier", q) for q in [
        "name:blue", "name:björk", "n:1991", "n:1997", "title:blue", "artist:blue",
        "y:2001", "n,y:2001", "c,n:1993", "name:ΟΔΟΣ", "name,title:blue", "N:1993",
    ]
] + [
    ("lowercasing", q) for q in [
        "ΟΔΟΣ", "οδοσ", "οδος", "οδός", "ΟΔΌΣ", "ΧΑΤΖΙΔΑΚΙΣ", "χατζιδακις",
        "χατζιδακισ", "Χατζιδάκις", "ΟΔΟΣ ΟΝΕΙΡΩΝ", "ǅemal", "ǆemal", "Ǆemal",
        "ǅEMAL", "dzemal", "artist:bijedić", "ΜΑΝΟΣ", "μανοσ", "ΜΑΝΟΣ|ΟΔΟΣ",
    ]
]

SHELF = [
    # Integer constants (stock 2, format 1) and integer boosts: integer scores.
    ("integer scores", q) for q in [
        "stock:a1", "s:a1", "stock:a1 format:paperback", "format:paperback stock:a1",
        "s:b2 f:ebook", "format:paperback", "f:hardcover", "f:audiobook", "a1",
        "a1 paperback", "paperback a1", "stock:a1 stock:a2", "s:a1 s:a1", "s:zz",
        "f:zz", "s:a1 f:zz", "stock:a1…a3", "s:a1…a3 f:paperback", "stock:a1…c3",
        "s:b1…b2 f:ebook", "f:ebook|audiobook", "s:a1|b1", "s:a1|zz f:paperback",
        "stock:a1 format:paperback harbour", "s:c1 f:audiobook", "f:pap", "f:paperback\"",
        "s:a1\"", "stock,format:a1", "s,f:paperback",
    ]
] + [
    # Logarithmic with an offset: author (weight: 2, an integer offset) and
    # genre (Logarithmic.new(0.5)); floats whatever the offset.
    ("logarithmic offsets", q) for q in [
        "holt", "author:holt", "author:hol", "author:h", "maren holt", "holt maren",
        "duarte", "berg", "okafor", "author:berg title:winter", "mystery", "genre:mystery",
        "genre:travel", "genre:poetry", "mystery holt", "holt mystery", "travel berg",
        "genre:fiction author:duarte", "mys", "genre:myst", "author:o", "a", "b",
        "holt|berg", "mystery|travel", "holt mystery paperback", "genre:history s:c3",
        "tomas", "ines berg", "ruth|anna",
    ]
] + [
    # Mixed: logarithmic floats with integer constants and boosts.
    ("mixed", q) for q in [
        "harbour", "title:harbour", "harbour a1", "harbour paperback", "silent",
        "silent paperback a2", "winter", "winter hardcover", "the", "the salt",
        "salt stone", "orchard", "orchard songs", "lisbon", "lights lisbon",
        "harbor~", "garden~", "harbour f:ebook", "keeping c1", "roads s:b1 f:ebook",
        "glass", "songs poetry", "stone history", "winter roads travel",
        "s:a1 harbour holt mystery", "title:orchard genre:gardening s:b1",
    ]
]

SHELF_PAGED = [
    ("paging", {"query": "f:paperback", "ids": "3", "offset": "2"}),
    ("paging", {"query": "holt|berg", "ids": "4", "offset": "3"}),
    ("paging", {"query": "s:a1…c3", "ids": "0"}),
    ("paging", {"query": "a1 paperback", "ids": "1", "offset": "1"}),
]

# The catalog is replayed against one route per set of Search options
# (catalog/picky_app.rb): every query at several pages, since the options
# act on paging and totals (terminate_early, unique, max_allocations).
CATALOG_QUERIES = [
    "river", "song", "stone", "anna", "peter", "mara", "river song", "song river",
    "anna peter", "peter anna", "song song", "stone river song", "winter garden",
    "garden winter", "river xyz", "xyz river", "xyz", "xyz qqq", "title:river song",
    "author:anna river", "blurb:song", "r", "s", "song|river", "anna|xyz",
    "the river", "river s", "song winter garden", "peter stone song",
]
CATALOG_PAGES = [{}, {"ids": "2"}, {"ids": "3", "offset": "2"}, {"ids": "1", "offset": "5"},
                 {"ids": "0"}, {"ids": "4", "offset": "9"}]
CATALOG = [
    ("search options", dict({"query": q}, **page))
    for q in CATALOG_QUERIES for page in CATALOG_PAGES
]

STREETS = [
    # The Polish substituter: Ł -> L, accents dropped, no ß or umlaut rule.
    ("polish", q) for q in [
        "lodz", "łódź", "ŁÓDŹ", "Łódź", "krakow", "kraków", "gdansk", "wroclaw",
        "zolkiewskiego", "żółkiewskiego", "rynek glowny", "glowny", "rynek", "roz",
        "aleja róż", "lacinski", "łaciński", "poznan", "zurich", "zürich", "zuerich",
        "straße", "strasse", "strase", "muller", "müller", "mueller", "lowicz",
        "ostrow", "tumski", "swietej anny", "świętej", "city:łódź", "city:lodz",
    ]
] + [
    # normalizes_words: "St."/"St" -> sankt, "Ul." -> ulica, "…strasse" -> "… str"
    # (one word with a space: not split again).
    ("normalize", q) for q in [
        "st.", "St.", "st", "sankt", "sankt gallen", "st. gallen", "st gallen", "st jakob",
        "jakob", "ul.", "ul", "ulica", "ulica swietej", "ul. anny", "bahnhof", "bahnhof str",
        "str", "haupt", "hauptstrasse", "muller str", "title:st", "street:st", "st*",
        "street:sankt", "sankt*", "peter", "sankt peter strasse", "strasse peter",
    ]
] + [
    # rejects_token_if: words shorter than two characters (the search side
    # sees the raw word: "a*" and "street:a" are not rejected).
    ("reject", q) for q in [
        "a", "b", "a b", "a bb", "bb", "ccc", "a*", "street:a", "x", "x y", "city:x",
        "c strasse", "ccc a", "a|bb", "bb|ccc", "é", "éé",
    ]
] + [
    # tags have their own indexing options: split on commas only, no removal,
    # no substitution, no reject, no normalize ("old town" is one token the
    # search, which splits on spaces, cannot reach).
    ("per-category indexing", q) for q in [
        "market", "river", "church", "old", "town", "old town", "tags:market",
        "tags:old", "shops", "harbour", "island", "park", "tags:x", "tags:bb",
        "tags:a", "y", "market river", "river market", "tags:river city:łódź",
    ]
]

STREETS_PAGED = [
    ("paging", {"query": "market", "ids": "2", "offset": "1"}),
    ("paging", {"query": "river", "ids": "0"}),
]

# keys: one index per key_format, all answering as "items" (routes /float,
# /string, /symbol of keys/picky_app.rb); tags are ready-made tokens.
KEYS = [
    ("ids", q) for q in [
        "lamp", "table", "shelf", "chairs", "chair", "box", "blue", "lamp blue",
        "blue lamp", "secret", "answer", "tiny", "huge", "vast", "speck", "letter",
        "half", "thousand", "negative", "l", "t", "s",
    ]
] + [
    ("ready-made tokens", q) for q in [
        "sale", "lighting", "Lighting", "furniture", "storage", "bulk", "Bulk",
        "spy", "spy gear", "Spy Gear", "small", "small things", "42", "tags:42",
        "tags:blue", "tags:sale", "tags:lig", "tags:li", "tags:l", "tags:furn",
        "furn", "stor", "tags:sale title:lamp", "blue sale", "lighting blue",
        "tags:null", "null",
    ]
]

KEYS_PAGED = [
    ("paging", {"query": "sale", "ids": "2", "offset": "1"}),
    ("paging", {"query": "furniture", "ids": "3", "offset": "2"}),
]

# Facets of the catalog (routes /plain/facets/<category> and
# /all/facets/<category>): no filter, filters (several words, qualifiers,
# `|`, `*`, a last word that stays exact), at_least, counts=false.
CATALOG_FACETS = [
    ("facets", params) for params in [
        {}, {"at_least": "2"}, {"at_least": "0"}, {"at_least": "-1"}, {"at_least": "9"},
        {"counts": "false"}, {"counts": "false", "at_least": "3"}, {"filter": ""},
        {"filter": "river"}, {"filter": "song"}, {"filter": "river song"}, {"filter": "anna"},
        {"filter": "riv"}, {"filter": "riv*"}, {"filter": "title:river"}, {"filter": "author:anna"},
        {"filter": "song|winter"}, {"filter": "xyz"}, {"filter": "river xyz"},
        {"filter": "stone", "at_least": "2"}, {"filter": "song", "counts": "false"},
        {"filter": "the river", "at_least": "1"}, {"filter": "peter stone song"},
        {"filter": "garden", "at_least": "3"}, {"filter": "mara"}, {"filter": "s*"},
    ]
]

# dupes: records sharing ids, merged into one document each (Picky's order).
DUPES = [
    ("merged ids", q) for q in [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "soup",
        "alphabet", "alpha\"", "beta\"", "gamma\"", "a", "al", "alp", "b", "g", "ga",
        "gam", "d", "e", "alpha beta", "beta alpha", "gamma beta", "beta gamma",
        "gamma delta", "delta gamma", "alpha gamma", "gamma alpha", "ann", "lee",
        "ann lee", "bo", "chan", "cy", "moss", "dee", "ray", "lee gamma", "gamma lee",
        "chan beta", "beta|gamma", "gamma|alpha", "alpha|zeta", "title:gamma",
        "author:ann", "gama~", "alfa~", "betta~", "title:a author:a", "gamma*",
        "alpha* beta*",
    ]
]

DUPES_PAGED = [
    ("paging", {"query": "gamma", "ids": "2", "offset": "1"}),
    ("paging", {"query": "beta", "ids": "1", "offset": "2"}),
    ("paging", {"query": "a", "ids": "3", "offset": "2"}),
]


# media: one search over three indexes (books, films, music answered as
# "tracks"; media/picky_app.rb), replayed against one route per set of
# Search options. Words found in one, two or all three indexes, qualifiers
# that only some indexes know, and pages that span the indexes'
# allocations (books and films share integer ids, music's are strings).
MEDIA = [
    ("one index", q) for q in [
        "björk", "lisboa", "nosferatu", "akunin", "kierkegaard", "bergman",
        "1843", "prince",
    ]
] + [
    ("two indexes", q) for q in [
        "lisbon", "velvet", "nocturne", "dancing", "secret", "schöne", "nachtzug",
        "grüne", "train", "1999", "woody",
    ]
] + [
    ("three indexes", q) for q in [
        "river", "stone", "night", "winter", "garden", "blue", "summer", "love",
        "song", "moon", "rain", "café", "heart", "letters", "moonlight", "über",
        "øresund", "θάλασσα",
    ]
] + [
    ("names", q) for q in [
        "anna", "peter", "berg", "müller", "holm", "søren", "jørgensen", "élodie",
        "weiß", "παππά", "θεοδωράκης", "αγγελόπουλος",
    ]
] + [
    ("qualifiers", q) for q in [
        "author:anna", "a:anna", "director:anna", "d:anna", "artist:anna", "by:anna",
        "by:müller", "by:stone", "by:björk", "d:björk", "y:1999", "year:2016",
        "title:river", "title:1999", "title:stone song", "foo:river", "t:river",
        "author:river", "artist:1999", "author,director:anna", "artist,title:river",
        "d,a:berg", "by,y:1999", "d:woody allen", "stone by:peter", "by:peter stone",
        "by:anna y:1999", "by:", "foo:river stone", "BY:anna",
    ]
] + [
    ("several words", q) for q in [
        "river stone", "stone river", "anna berg", "berg anna", "peter müller",
        "winter garden", "garden winter", "night train", "love letters", "blue river",
        "stone song", "summer night", "anna 1999", "1999 river", "café society",
        "night train lisbon", "river 1999 berg", "blue moon", "the river",
        "heart of winter", "θάλασσα παππά", "peter stone",
        "anna holm summer",
    ]
] + [
    ("partial", q) for q in [
        "riv", "ber", "mül", "st", "s", "a", "moon*", "win* garden",
        "garden win", "anna b", "by:an", "d:wood", "bjö", "θάλ",
    ]
] + [
    ("exact", q) for q in [
        "river\"", "moon\"", "\"stone\"", "stone\" song", "rain\"", "\"1999\"",
    ]
] + [
    ("or", q) for q in [
        "river|stone", "björk|bergman", "anna|peter", "lisbon|lisboa", "xyz|river",
        "river|xyz", "by:anna|peter", "winter|summer night", "1999|2016",
        "moon|moonlight",
    ]
] + [
    ("found nowhere", q) for q in [
        "xyz", "qqq zzz", "river xyz", "xyz river", "zzz*", "björk river",
        "river björk", "bergman björk", "lisboa 1999", "velvet d:lynch",
    ]
] + [
    ("non-ascii", q) for q in [
        "uber", "ÜBER", "cafe", "CAFÉ", "straße", "strasse", "oresund", "ØRESUND",
        "ΘΆΛΑΣΣΑ", "θαλασσα", "νύχτα", "Ζορμπάς", "ängel", "kieślowski",
        "μίκης θεοδωράκης",
    ]
] + [
    ("similarity", q) for q in [
        "rivver~", "stoen~", "lisbn~", "anna~", "moon~ river",
    ]
]

MEDIA_PAGE_QUERIES = ["river", "stone", "anna", "peter", "a", "river|stone", "by:berg"]
MEDIA_PAGES = [{"ids": "0"}, {"ids": "2"}, {"ids": "3", "offset": "4"},
               {"ids": "5", "offset": "5"}, {"ids": "4", "offset": "9"}]
MEDIA_PAGED = [
    ("paging", dict({"query": q}, **page))
    for q in MEDIA_PAGE_QUERIES for page in MEDIA_PAGES
] + [
    ("paging", {"query": "river", "ids": "1", "offset": "13"}),
    ("paging", {"query": "river", "ids": "20", "offset": "100"}),
    ("paging", {"query": "night", "ids": "3", "offset": "6"}),
    ("paging", {"query": "stone song", "ids": "2", "offset": "1"}),
]

# places: Picky's ranged categories (elevation: range 100, precision 2;
# level: the same field, range 25, anchor 5.0) and geo categories (north,
# east: geo_categories 2.5 km, precision 3, from lat and lng), with names
# and cities (places/picky_app.rb, routes /plain and /boosted). A ranged
# category looks every word up as Ruby's String#to_f of its text, in the
# grid cell of that value; cell edges below were computed with IEEE
# doubles as Picky does (cell = floor((x - anchor) / grid), the anchor
# shifted by one range and one grid): each pair is the last double of
# one cell and the first double of the next.
PLACES = [
    ("ranged numbers", q) for q in [
        "400", "410", "0", "5", "20", "171.5", "300", "869", "1000", "4478", "5000",
        "12", "14", "2.5", "3466", "605", "400.0", "400.", "0400", ".5", "-0.0",
        "4e2", "2.2e2", "47.37", "8.54", "100000", "400 400", "400 500", "400 -28",
        "400 170",
    ]
] + [
    ("negative numbers", q) for q in [
        "-28", "-430", "-86", "-85.95", "-3", "-1.5", "-100", "-34.6037", "-28 -430",
        "--28", "28-", "−28",
    ]
] + [
    ("not a number", q) for q in [
        "abc", "n/a", "N/A", "m", "ca.", "400abc", "abc400", "0x190", "1_000",
        "1__000", "4,5", "1e", "Infinity", "NaN", "-", "٤٠٠", "+400", "-+28",
    ]
] + [
    ("huge numbers", q) for q in [
        "1e30", "123456789012345678901234567890", "1.7976931348623157e308", "-1e308",
        "1e309", "-1e400", "1e-400", "elevation:1e400", "name:1e400", "north:1e30",
    ]
] + [
    ("qualifiers", q) for q in [
        "elevation:400", "level:400", "lv:170", "elevation:-28", "level:-28",
        "elevation,level:400", "level,elevation:400", "elevation:0", "elevation:12",
        "elevation:410", "elevation:abc", "level:n/a", "north:abc", "elevation:",
        "north:", ":400", "foo:400", "elevation:400 foo:bar", "ELEVATION:400",
        "name:400", "name,elevation:400", "elevation:400 elevation:500",
        "elevation:400 level:400", "north:0 east:0",
    ]
] + [
    ("geo", q) for q in [
        "north:47.37", "east:8.54", "north:47.37 east:8.54", "east:8.54 north:47.37",
        "north:48.2085 east:16.3731", "north:48.27 east:16.33",
        "north:-34.6037 east:-58.3816", "north:-34.55 east:-58.46",
        "north:31.2 east:35.362", "north:36.23 east:-116.77", "north:46.56 east:8.56",
        "north:46.56", "north:47.37 east:16.37", "north:47.37 east:-8.54",
        "north:-47.37 east:8.54", "north:90", "east:-180", "47.37 8.54",
        "48.2085 16.3731", "-34.6037 -58.3816", "0 0",
        "north:47.37 east:8.54 elevation:400", "north:47.37 east:8.54 zürich",
        "zürich north:47.37", "wien north:48.2 east:16.37", "buenos aires north:-34.6",
        "north:47.4 east:8.55 440", "north:47.37 east:8.54 level:410",
    ]
] + [
    ("cell edges", q) for q in [
        # elevation: Steinhof (300) is in cells 9..13, Baku (-28) in 0..4.
        "elevation:419.9999999999999", "elevation:419.99999999999994",
        "elevation:219.99999999999994", "elevation:219.99999999999997",
        "elevation:59.99999999999998", "elevation:59.999999999999986",
        # level: Stephansdom (171.5) is in cells 11..13.
        "level:196.66666666666666", "level:196.66666666666669",
        # north: Üetliberg (47.3497) in 7380..7386; east: Witikon (8.595) in 671..677.
        "north:47.36991671428571", "north:47.369916714285715",
        "north:47.325001114285705", "north:47.32500111428571",
        "east:8.64304474285714", "east:8.643044742857143",
        # Obelisco (-34.6037, -58.3816).
        "north:-34.58180374285715", "north:-34.58180374285714",
        "east:-58.42236257142858", "east:-58.42236257142857",
    ]
] + [
    ("names and numbers", q) for q in [
        "zürich", "wien", "buenos aires", "zürich 400", "400 zürich", "wien 170",
        "null island", "atlantic", "unbekannt 400", "nirgendwo", "dock 12", "sud 14",
        "jungfraujoch 3", "jungfraujoch 3466", "dolder 605", "dolder m",
        "bürkliplatz 410", "bürkliplatz 0", "aeroparque 0", "wienerberg 220",
        "tigre -1.5", "ein bokek -430", "baku -28", "núñez", "zürich-west", "west",
        "zoo zürich", "prime tower 411.75",
    ]
] + [
    ("partial", q) for q in [
        "40", "4", "zür", "400*", "zürich 4", "4 zürich", "elevation:40", "north:47",
        "north:47.37*",
    ]
] + [
    ("exact", q) for q in [
        "400\"", "\"400\"", "north:47.37\"", "zürich\"", "\"", "400\" zürich",
    ]
] + [
    ("similarity", q) for q in [
        "400~", "elevation:400~", "north:47.37~", "zurich~", "~",
    ]
] + [
    ("or", q) for q in [
        "400|500", "elevation:400|500", "400|zürich", "-28|-430", "north:47.37|48.2",
        "abc|400", "170|400 wien",
    ]
] + [
    ("ranges", q) for q in [
        "elevation:400…500", "400…410", "elevation:400…401", "elevation:400…400",
        "elevation:410…400", "elevation:-28…-20", "elevation:-28…-28", "elevation:-5…5",
        "elevation:1.5…2.5", "north:47.37…47.40", "elevation:400…", "elevation:…400",
        "…", "level:160…175", "zürich 400…410", "elevation:400…410\"",
    ]
] + [
    ("empty", q) for q in ["", " ", "*", "400 *"]
]

PLACES_PAGED = [
    ("paging", {"query": "400", "ids": "5", "offset": "3"}),
    ("paging", {"query": "zürich", "ids": "0"}),
    ("paging", {"query": "zürich", "ids": "7", "offset": "20"}),
    ("paging", {"query": "elevation:400…500", "ids": "5", "offset": "18"}),
    ("paging", {"query": "elevation:400…401", "ids": "30", "offset": "15"}),
    ("paging", {"query": "north:47.37 east:8.54", "ids": "4", "offset": "12"}),
    ("paging", {"query": "-28", "ids": "100"}),
]


def write(path, prefix, entries, paged=()):
    with open(path, "w", encoding="utf-8") as out:
        n = 0
        for note, q in entries:
            n += 1
            out.write(json.dumps({"id": f"{prefix}{n:03}", "note": note,
                                  "params": {"query": q}}, ensure_ascii=False) + "\n")
        for note, params in paged:
            n += 1
            out.write(json.dumps({"id": f"{prefix}{n:03}", "note": note,
                                  "params": params}, ensure_ascii=False) + "\n")


write(os.path.join(HERE, "agora", "agora_queries.jsonl"), "a", AGORA, AGORA_PAGED)
write(os.path.join(HERE, "records", "records_queries.jsonl"), "r", RECORDS)
write(os.path.join(HERE, "shelf", "shelf_queries.jsonl"), "s", SHELF, SHELF_PAGED)
write(os.path.join(HERE, "catalog", "catalog_queries.jsonl"), "c", [], CATALOG)
write(os.path.join(HERE, "catalog", "facets_queries.jsonl"), "f", [], CATALOG_FACETS)
write(os.path.join(HERE, "streets", "streets_queries.jsonl"), "t", STREETS, STREETS_PAGED)
write(os.path.join(HERE, "keys", "keys_queries.jsonl"), "k", KEYS, KEYS_PAGED)
write(os.path.join(HERE, "dupes", "dupes_queries.jsonl"), "d", DUPES, DUPES_PAGED)
write(os.path.join(HERE, "media", "media_queries.jsonl"), "md", MEDIA, MEDIA_PAGED)
write(os.path.join(HERE, "places", "places_queries.jsonl"), "pl", PLACES, PLACES_PAGED)
