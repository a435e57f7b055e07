#!/usr/bin/env python3
"""Writes the query lists replayed against Picky for the agora and records
definitions (agora/agora_queries.jsonl, records/records_queries.jsonl next
to this script): one JSON object a line, {"id","note","params":{...}}.

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
