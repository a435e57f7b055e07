#!/usr/bin/env python3
"""Generate the deterministic query list for the Picky golden recording.

Output: JSONL lines {"id","note","params"} or {"id","note","raw_query"}.
Usage: gen_picky_queries.py BOOKS_CSV OUT
"""
import csv
import json
import re
import sys

books_csv, out_path = sys.argv[1], sys.argv[2]

rows = list(csv.reader(open(books_csv, encoding="utf-8")))
STOP = {"and", "the", "of", "it", "in", "for"}


def toks(text):
    text = re.sub(r'[^a-zA-Z0-9\s/\-_:"&.]', "", text)
    return [t.lower() for t in re.split(r'[\s/\-_:"&.]', text) if t]


title_toks = [toks(r[1]) for r in rows]
author_toks = [toks(r[2]) for r in rows]

entries = []
seen = set()


def add(note, query=None, raw=None, **params):
    """Add a query. query=None and raw=None with no params -> no query param."""
    if raw is not None:
        key = ("raw", raw)
        e = {"note": note, "raw_query": raw}
    else:
        p = {}
        if query is not None:
            p["query"] = query
        for k, v in params.items():
            p[k] = v
        key = ("p", json.dumps(p, sort_keys=True, ensure_ascii=False))
        e = {"note": note, "params": p}
    if key in seen:
        return
    seen.add(key)
    entries.append(e)


# --- 1. single words -------------------------------------------------------
for w in ["alan", "history", "peter", "john", "american", "politics", "minutes",
          "hemingway", "weinberg", "steven", "education", "theory", "research",
          "women", "war", "world", "century", "modern", "religion", "ethics",
          "a", "s", "j", "iii", "de", "le", "nietzsche", "rousseau", "miller",
          "xyzzy", "qqq", "zzzz", "z", "x", "q", "9", "47", "65", "800"]:
    add("single word", w)

# --- 2. prefixes of 1..n letters ------------------------------------------
for w in ["alan", "history", "hemingway", "politics", "international", "rousseau",
          "nietzsche", "1999", "weinberg", "education"]:
    for i in range(1, len(w) + 1):
        add(f"prefix {i}/{len(w)} of {w}", w[:i])

# --- 3. multi-word AND (realistic, from titles and authors) ---------------
# consecutive title word windows (2..5 words), deterministic pick of rows
for idx in range(0, 540, 9):
    t = [x for x in title_toks[idx] if x not in STOP]
    n = 2 + (idx // 9) % 4  # 2..5 words
    if len(t) >= n:
        add(f"title words row {idx + 1} ({n} words)", " ".join(t[:n]))
# author first + last names
for idx in range(3, 540, 13):
    a = author_toks[idx]
    if len(a) >= 2:
        add(f"author name row {idx + 1}", " ".join(reversed(a[:2])))
# title word + author surname
for idx in range(5, 540, 17):
    t = [x for x in title_toks[idx] if x not in STOP and len(x) > 2]
    a = author_toks[idx]
    if t and a:
        add(f"title word + author row {idx + 1}", f"{t[-1]} {a[0]}")
        add(f"author + title prefix row {idx + 1}", f"{a[0]} {t[0][:3]}")
# realistic typing progression
phrase = "american politics"
for i in range(1, len(phrase) + 1):
    if phrase[:i].endswith(" "):
        continue
    add("typing progression", phrase[:i])
for q in ["alan p", "a s", "john a", "john history", "american politics",
          "the history of", "1999 a", "social theory", "public policy",
          "political economy", "latin america", "new york", "civil war",
          "john smith", "michael j", "robert w", "history america 1999",
          "women gender politics", "ethics self life", "a a", "a a a",
          "a s j", "j j j j", "history history", "alan alan", "a b c d e"]:
    add("multi-word AND", q)

# --- 4. last word partial / * / "exact" -----------------------------------
for q in ["american pol", "john hist", "hist american", "hist* american",
          "alan* p", "a* s*", "hist*", "*", "**", "*alan", "al*an", "alan*",
          "title:hist*", "hist*|\"peter\"", "alan p*", "1999*", "199*",
          "year:199*", "year:199", "al* al*"]:
    add("partial / star", q)
for q in ['"alan"', '"al"', '"al', 'al"', '"old english"', '"', '""', '"""',
          'alan "', '" alan', '"hist" american', 'american "hist"',
          'american "politics"', '"a" "s"', 'al"an', '"alan"*', '"alan*"',
          'alan*"', '"1999"', 'title:"alan"', '"title:alan"', 'author:"al"']:
    add("quotes", q)

# --- 5. similarity ---------------------------------------------------------
for q in ["hemingwai~", "amerika~", "histori~", "politiks~", "~", "~~",
          "alan~", "alan~ p", "p alan~", "peter~", "weinberg~", "wienberg~",
          "1999~", "a~", "title:amerika~", "author:hemingwai~", "year:amerika~",
          "isbn:amerika~", "alan~*", "alan*~", 'alan"~', 'alan~"', "~alan",
          "ame~rika", "hemingwai~ 1999", "amerika~ politiks~", "thery~",
          "theori~", "moddern~", "relijun~", "ethiks~", "xyzzy~",
          "nietzsche~", "niche~", "filosofy~", "sykology~", "amerika~|alan",
          "alan|amerika~", "econommy~", "edducation~", "minits~", "centurie~",
          "AMERIKA~", "~ alan", "alan ~"]:
    add("similarity", q)

# --- 6. qualifiers ---------------------------------------------------------
for q in ["title:alan", "author:alan", "year:1999", "title,author:alan",
          "author,title:alan", "title,title:alan", "title,isbn:alan",
          "isbn:alan", ":alan", ",:alan", "title,:alan", ",title:alan",
          "TITLE:alan", "Title:Alan", "AUTHOR:ALAN", "title:", "author:",
          ":", "::", "title:al", "title:al*", "author:al", "author:\"alan\"",
          "year:1999 title:history", "t:alan", "title:alan:peter",
          "title::alan", "title: alan", "title :alan", "title:alan peter",
          "peter title:alan", "author:peter title:a", "year:19",
          "year:1999 a", "title,author,year:1999", "year,title:1999",
          "title:1999", "author:1999", "title:the", "author:the", "title:the alan",
          "title:alan|author:peter", "title:alan|peter", "alan|title:peter",
          "title:a author:s", "title:a title:s", "author:a title:s",
          "title:hist american", "author:smith john", "year:1999 year:2000",
          "year:1999|year:2000", "tItLe:AlAn", "title,author:hemingway"]:
    add("qualifier", q)

# --- 7. stopwords ----------------------------------------------------------
for q in ["the", "and", "of", "it", "in", "for", "THE", "The", "the the",
          "the of", "the alan", "alan the", "the history of", "and alan",
          "a the", "theory the", "theo", "the*", "the~", "the.", "the,",
          "the\nalan", "alan\nthe", "of history", "history of", "for it",
          "in the", "the:", "themes", "andrew", "the alan peter",
          "the-alan", "alan-the", "the_alan", "the:alan", "theα alan",
          "αthe alan", "ＴＨＥ alan", "alan\r\nthe", "the~ alan", "the* alan",
          "the. alan", "the: alan", "title:the history",
          "The Alan", "the alan.", "the\talan", "the  alan", " the",
          "the ", "and the of it in for", "and the of it in for history"]:
    add("stopwords", q)

# --- 8. removed characters / punctuation ----------------------------------
for q in ["alan!", "al'an", "(alan)", "alan?", "o'hair", "ohair", "taylor's",
          "taylors", "#alan", "alan$", "[alan]", "alan;peter", "alan+peter",
          "alan.", ".alan", "alan,peter", "alan, peter", "alan,", "history_theory",
          "alan_", "_alan", "alan&peter", "alan/peter", "alan-peter", "jr.",
          "jr", "a.", "-", "/", "&", "_", ".", ",", ":", "|", "mc-lean",
          "alan--peter", "alan//peter", "alan & peter", "al-an", "1838-1945",
          "alan@peter", "alan%peter", "alan=peter", "alan?peter", "'", "`alan`",
          "alan\\", "{alan}", "<alan>", "alan...", "...", "alan;", "~*\"",
          "\"~", "*~", "a-", "-a", "alan -", "alan /", "alan &"]:
    add("punctuation / removed characters", q)

# --- 9. alternatives -------------------------------------------------------
for q in ["alan|peter", "alan|", "|alan", "alan||peter", "|", "||", "|||",
          "alan|peter|john", "a|b", "alan|xyzzy", "xyzzy|alan", "xyzzy|qqq",
          "alan|peter john", "john alan|peter", "\"alan\"|pet",
          "alan|peter|alan", "alan|alan", "history|politics american",
          "alan| peter", "alan |peter", "alan|~", "~|alan", "hemingwai~|peter~",
          "alan*|p", "a|s", "a|s j", "alan|1999", "1999|2000", "year:1999|2000",
          "the|alan", "alan|the", "alan|peter ids", "|alan peter", "alan| p",
          "peter alan|", "alan||", "||alan", "alan|,", "history,|peter"]:
    add("alternatives", q)

# --- 10. case --------------------------------------------------------------
for q in ["ALAN", "Alan", "aLaN", "HISTORY", "Hemingway", "AMERICAN POLITICS",
          "American Pol", "HiStOrY Of AmErIcA"]:
    add("case", q)

# --- 11. non-ASCII ---------------------------------------------------------
for q in ["müller", "mueller", "MÜLLER", "Müller", "ferré", "ferre", "ferr",
          "gómez", "gomez", "gmez", "quiñones", "quinones", "quiones",
          "gmez-quiones", "gómez-quiñones", "agustí", "agusti", "agust",
          "straße", "strasse", "ß", "ẞ", "\ufb01rst", "\ufb00", "ｆｉｒｓｔ",
          "ＡＬＡＮ", "alan\u00a0peter", "alan\u3000peter", "alan 😀", "😀",
          "alan😀", "日本", "日本 alan", "ελλάδα", "αλαν", "Σ", "москва",
          "İstanbul", "ı", "ǆ", "Ⅻ", "²", "½", "①", "١٩٩٩", "…", "alan…",
          "u\u0308ber", "A\u0308", "o\u0308", "e\u0301", "café", "naïve",
          "crème brûlée", "æsthetics", "œuvre", "ø", "ł", "đ", "þ", "ð",
          "ñ", "Ω", "µ", "ﬀﬁﬂﬃﬄ", "\u200balan", "alan\u200b", "\ufeffalan",
          "\u0301alan", "ß~", "ferré~", "müller|gómez", "title:müller",
          "tïtle:alan", "ŧitle:alan", "ＴＩＴＬＥ:alan", "title：alan",
          "1990…2000", "alan\u2028peter", "alan\u0085peter", "alan\u2003peter"]:
    add("non-ASCII", q)

# --- 12. whitespace --------------------------------------------------------
for q in ["alan\tpeter", "alan\npeter", "\nalan", "alan\n", "alan\r\npeter",
          "\talan", "alan\t", "alan\rpeter", "alan\vpeter", "alan\fpeter",
          "  alan  ", " ", "   ", "\n", "\t", "alan \n peter", "history\nof",
          "the\n", "\nthe", "a\nb\nc"]:
    add("whitespace", q)

# --- 13. years / numbers / ranges ------------------------------------------
for q in ["1999", "2000", "2005", "1964", "1963", "2006", "1838", "1945",
          "19", "1", "0", "00", "01999", "-1999", "1999.0", "1999 history",
          "history 1999", "1999 2000", "year:2000 american", "1990…2000",
          "1990...2000", "1990-2000", "1990..2000", "1990.2000",
          "year:1990…2000", "year:1990-2000", "1990…", "…2000", "\"1990-2000\"",
          "1990~2000", "1990|1991|1992", "year:1990|year:1991", "65 million",
          "1600 1940", "1e3", "0x10", "١٩٩٩~"]:
    add("years / numbers / ranges", q)

# --- 14. ids / offset paging -----------------------------------------------
for ids in ["0", "1", "5", "100", "-1", "-5", "3x", "abc", "2.9", "", " 5",
            "+5", "0x10", "1e2", "20", "21", "540", "99999999999999999999",
            "1_0", "1__0", "_1", "0b11", "- 5", "--5", "+-5", "\n5", "5 ",
            "9223372036854775807", "9223372036854775808",
            "-9223372036854775808", "-9223372036854775809"]:
    add(f"ids={ids!r}", "a", ids=ids)
for off in ["1", "5", "10", "20", "57", "100", "1000", "-1", "-5", "-20",
            "-100", "abc", "3x", "2.9", "", "0", "1_0", "9223372036854775807",
            "99999999999999999999", "-9223372036854775808", "-9223372036854775000"]:
    add(f"offset={off!r}", "a s", ids="5", offset=off)
for ids, off in [("0", "5"), ("1", "1"), ("1", "22"), ("1", "23"), ("3", "8"),
                 ("3", "9"), ("10", "-3"), ("100", "-1"), ("-1", "2"),
                 ("5", "-57"), ("5", "-58"), ("2", "0")]:
    add(f"paging ids={ids} offset={off}", "john a", ids=ids, offset=off)
for off in ["0", "1", "2", "3", "-1"]:
    add(f"offset={off} single allocation", "alan", ids="1", offset=off)
add("offset only", "alan", offset="1")
add("ids=0 multi", "a s", ids="0")
add("ids=0 no results", "xyzzy", ids="0")
add("ids=0 offset=3", "alan", ids="0", offset="3")

# --- 15. raw query strings: repeats, arrays, +, empty, missing, bad % ----
for raw, note in [
    ("query=alan&query=peter", "repeated query: last wins"),
    ("query=peter&query=alan", "repeated query: last wins"),
    ("query=alan&query=", "repeated query, last empty"),
    ("query[]=alan", "query[] array"),
    ("query[]=alan&query[]=peter", "query[] array two values"),
    ("query[a]=alan", "query[a] hash"),
    ("query=alan&ids=5&ids=1", "repeated ids"),
    ("query=alan&ids[]=5", "ids[] array"),
    ("query=alan&offset[]=1", "offset[] array"),
    ("Query=alan", "wrong-case parameter name: query missing"),
    ("query", "query without ="),
    ("query&ids=5", "query without = and ids"),
    ("query=alan+peter", "+ as space"),
    ("query=alan%2Bpeter", "%2B literal plus"),
    ("query=+", "+ alone"),
    ("query=alan+", "trailing +"),
    ("query=+alan", "leading +"),
    ("query=", "empty query"),
    ("", "no parameters at all"),
    ("ids=5", "missing query with ids"),
    ("query=%20", "space only"),
    ("query=%20%20", "two spaces"),
    ("query=%", "invalid %-encoding"),
    ("query=%zz", "invalid %-encoding zz"),
    ("query=alan%", "invalid %-encoding trailing"),
    ("query=%2", "invalid %-encoding short"),
    ("ids=%", "invalid %-encoding in ids"),
    ("foo=%", "invalid %-encoding in other param"),
    ("query=%E9", "invalid UTF-8 byte"),
    ("query=%C3%28", "invalid UTF-8 sequence"),
    ("query=m%FCller", "latin-1 u-umlaut byte"),
    ("query=%00alan", "NUL byte"),
    ("query=alan%00", "trailing NUL byte"),
    ("query=alan;ids=1", "semicolon separator"),
    ("query=alan&&ids=1", "empty pair"),
    ("&query=alan", "leading &"),
    ("query=alan#frag", "fragment in target"),
    ("query=al%61n", "encoded letter"),
    ("query=alan&foo=bar", "extra parameter"),
    ("query=alan&ids=", "empty ids"),
    ("query=alan&offset=", "empty offset"),
    ("query==alan", "double ="),
    ("query=a=b", "= inside value"),
    ("query=alan%7Cpeter", "encoded |"),
    ("query=alan|peter", "raw |"),
    ("query=title:alan", "raw :"),
    ("query=%22alan%22", "encoded quotes"),
    ("query=alan~", "raw ~"),
    ("query=alan*", "raw *"),
    ("query=%2F", "encoded /"),
    ("query=%26", "encoded &"),
    ("query=alan%26peter", "encoded & between words"),
    ("query=%3D", "encoded ="),
    ("query=%E2%80%A6", "encoded ellipsis"),
    ("query=a&query[]=b", "string then array for same key (Rack 400)"),
    ("query[]=b&query=a", "array then string for same key"),
    ("query[]=alan&query[]=", "query[] with empty second value"),
    ("query[][a]=x", "array of hash"),
    ("query[a][b][c]=x", "nested hash"),
    ("query[=alan", "unbalanced bracket in key"),
    ("query]=alan", "stray ] in key"),
    ("%71uery=alan", "percent-encoded key"),
    ("query=alan&ids=5;offset=1", "semicolon between ids and offset"),
    ("query=alan;;ids=1", "double semicolon"),
    ("query=alan&ids=%E9", "invalid UTF-8 in ids"),
    ("query=alan&foo=%E9", "invalid UTF-8 in other param"),
    ("query=%C3%A9", "encoded e-acute"),
    ("query=alan&ids=%D9%A5", "Arabic-Indic digit five as ids"),
    ("query=%EF%BF%BD", "U+FFFD replacement char"),
    ("query=%ED%A0%80", "encoded surrogate (invalid UTF-8)"),
    ("query=%F4%90%80%80", "code point above U+10FFFF (invalid UTF-8)"),
    ("query=%2525", "double-encoded percent"),
    ("query=alan&" + "pad=" + "x" * (10240 - 15), "query string exactly 10240 bytes (puma limit)"),
    ("query=alan&" + "pad=" + "x" * (10240 - 14), "query string 10241 bytes (over puma limit)"),
    ("query=alan" + "&a" * 4095, "4096 parameters (Rack limit)"),
    ("query=alan" + "&a" * 4096, "4097 parameters (over Rack limit)"),
    ("query" + "[a]" * 99 + "=x", "nesting depth 99"),
    ("query" + "[a]" * 100 + "=x", "nesting depth 100 (over Rack limit)"),
]:
    add(note, raw=raw)
add("missing query (params {})")  # /books with nothing

# --- 16. very long queries -------------------------------------------------
add("200x history (one allocation)", " ".join(["history"] * 200))
add("250 distinct non-matching words", " ".join(f"zq{i}x" for i in range(250)))
add("5 KB single word", "a" * 5120)
add("5 KB of 'minutes '", ("minutes " * 700)[:5120])
add("long query: 200 title-only words, one missing",
    " ".join(["history"] * 199 + ["xyzzy"]))
add("300 stopwords", " ".join(["the", "and", "of"] * 100))
add("300 stopwords + alan", " ".join(["the", "and", "of"] * 100 + ["alan"]))
add("long pipe chain", "|".join(["alan"] * 100))
add("long pipe chain mixed", "|".join(["alan", "peter", "john", "xyzzy"] * 30))
add("8 KB whitespace then alan", " " * 8000 + "alan")

# --- 17. realistic queries: more real words --------------------------------
# distinct title words (non-stop, len>=4) sampled deterministically
allt = sorted({w for ts in title_toks for w in ts if w not in STOP and len(w) >= 4})
for w in allt[::40]:
    add("real title word", w)
    add("real title word prefix", w[:4])
alla = sorted({w for ts in author_toks for w in ts if len(w) >= 4})
for w in alla[::35]:
    add("real author word", w)
for idx in range(7, 540, 23):
    t = [x for x in title_toks[idx] if x not in STOP]
    a = author_toks[idx]
    if len(t) >= 2 and a:
        add(f"realistic row {idx + 1}", f"{t[0]} {t[1][:3]}")
        add(f"realistic row {idx + 1} with author", f"{t[0]} {a[0]}")

with open(out_path, "w", encoding="utf-8") as o:
    for i, e in enumerate(entries, 1):
        rec = {"id": f"p{i:04d}"}
        rec.update(e)
        o.write(json.dumps(rec, ensure_ascii=False) + "\n")
print(len(entries), "queries", file=sys.stderr)
