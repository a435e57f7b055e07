#!/usr/bin/env python3
"""Deterministic list of query strings for tests/rack/params.jsonl.

Usage: python3 gen_cases.py ../golden/picky_recorded.jsonl > cases.jsonl
(one JSON string per line; feed them to rack_oracle.rb).
"""
import json
import random
import sys

cases = []
seen = set()


def add(qs):
    if qs not in seen:
        seen.add(qs)
        cases.append(qs)


# 1. every query string recorded from Picky (fragment dropped, as HTTP does)
for line in open(sys.argv[1]):
    url = json.loads(line)["url"]
    qs = url.split("?", 1)[1] if "?" in url else ""
    add(qs.split("#", 1)[0])

# 2. structure by hand
for qs in [
    "", "&", ";", "=", "==", "&&&", "query", "query=", "query==", "=alan",
    "query=a&query", "query&query=a", "query=a;query=b", "query=a&; ;ids=3",
    "query=a& ids=3", "query=a&  ids=3", "query=a ;ids=3",
    "query[]", "query[]=", "query[]=a&query[]", "query[]&query[]=a",
    "query[]=a&query=b", "query=a&query[]=b", "query=a&query[a]=b",
    "query[a]=b&query=c", "query[a]=b&query[]=c", "query[]=c&query[a]=b",
    "query[a]", "query[a]=", "query[a]=1&query[a]=2", "query[a]=1&query[b]=2",
    "query[a][b]=1&query[a][c]=2", "query[a][b]=1&query[a]=2",
    "query[a]=2&query[a][b]=1", "query[][a]=1&query[][b]=2",
    "query[][a]=1&query[][a]=2", "query[][a][b]=1&query[][a][c]=2",
    "query[][a][]=1&query[][a][]=2", "query[][]=1&query[][]=2",
    "query[][]]=1", "query[]]=1", "query]]=1", "query[[]]=1",
    "query[[=1", "[query]=1", "[]query=1", "][query=1", "query[a=1",
    "query[a]b=1", "query[a]b]=1", "query[]a=1", "query[]a]=1",
    "query[][=1", "query[][[=1", "query[]%0A[a]=1", "query[a]%0A[]=1",
    "query[x%0A[][a]]=1", "query%0A[]=1", "query[]=%0A", "query[%0A]=1",
    "query[][a%0Ab]=1", "query[]%0Ax=1", "query[]x%0A=1",
    "[]=1", "[]", "[][]=1", "[a]=1", "[=1", "]=1", "[]=1&query=a",
    "query=a%00b", "query=%00", "query%00=a", "query=a&ids%00=3",
    "query=a&ids=3%00", "query=a&ids=%203", "query=a&ids=+3",
    "query=a&ids=-3", "query=a&ids=%2D3", "query=a&ids=3.5", "query=a&ids=1e3",
    "query=a&ids=0x10", "query=a&ids=1_000", "query=a&ids=_1", "query=a&ids=1__0",
    "query=a&ids=9223372036854775807", "query=a&ids=9223372036854775808",
    "query=a&ids=-9223372036854775808", "query=a&ids=-9223372036854775809",
    "query=a&offset=000000000000000000000000000000001",
    "query=a&ids[]", "query=a&ids[]=1", "query=a&ids[a]=1", "query=a&offset[]=1",
    "query=a&ids", "query=a&offset", "query=a&ids=", "query=a&offset=",
    "query=%", "query=%%", "query=%2", "query=%2g", "query=%g2", "query=a%",
    "%=a", "%2=a", "query=a&%", "query=a&b=%", "query=%25", "query=%2525",
    "query=%E9", "query=%C3%A9", "query=%C3", "query=%C3%28", "query=%F0%9F%98%80",
    "query=%ED%A0%80", "query=%F4%90%80%80", "query=%EF%BF%BD", "%E9", "%E9=",
    "%C3%A9=1&query=a", "query[%E9]=1", "query[%C3%A9]=1", "query=a&%E9[]=1",
    "query[]=%E9", "query[]=%C3%A9", "query[]=%F0%9F%98%80", "query[]=%E2%80%A8",
    "query[]=%C2%85", "query[]=%C2%80", "query[]=%C2%A0", "query[]=%E2%80%8B",
    "query[]=%EF%B7%90", "query[]=%EF%BF%BE", "query[]=%F4%8F%BF%BF",
    "query[]=%01%02%1F%7F", "query[]=%07%08%09%0A%0B%0C%0D%1B",
    "query[]=%22%5C", "query[]=%23%7B", "query[]=%23%24", "query[]=%23%40",
    "query[]=%23", "query[]=%23a", "query[]=a%23", "query[%22]=1",
    "query[a%5Cb]=1", "query[%23%7B]=1", "query%5B%5D=a", "query%5Ba%5D=b",
    "query+=a", "query=+", "query=a+b", "+query=a", "query=a%2Bb",
    "query[+]=a", "query[]=a+b",
]:
    add(qs)

# 3. random mixes of the interesting pieces
rnd = random.Random(20240601)
atoms = [
    "query", "ids", "offset", "a", "b", "x", "1", "-2", "=", "=", "&", "&", ";",
    " ", "[", "]", "[]", "[a]", "[]", "%", "%2", "%zz", "%41", "%E9", "%C3%A9",
    "%5B", "%5D", "%0A", "%00", "%22", "%5C", "%23%7B", "+", "_", "#", "9999999999999999999",
]
for _ in range(700):
    n = rnd.randint(1, 12)
    add("".join(rnd.choice(atoms) for _ in range(n)))
for _ in range(200):
    parts = []
    for _ in range(rnd.randint(1, 4)):
        key = rnd.choice(["query", "ids", "offset", "q"]) + "".join(
            rnd.choice(["[]", "[a]", "[b]", "]", "["]) for _ in range(rnd.randint(0, 3))
        )
        val = "".join(rnd.choice(["a", "1", "-", "%20", "+", "%E9", "%5B"]) for _ in range(rnd.randint(0, 3)))
        parts.append(key if rnd.random() < 0.1 else key + "=" + val)
    add(rnd.choice(["&", ";", "&&"]).join(parts))

# 4. the limits
add("query=a" + "&a" * 4094)
add("query=a" + "&a" * 4095)
add("query=a" + ";a" * 4095)
add("query" + "[a]" * 98 + "=x")
add("query" + "[a]" * 99 + "=x")
add("query" + "[]" * 99 + "=x")
add("query" + "[]" * 100 + "=x")
add("query" + "[][a]" * 60 + "=x")

for qs in cases:
    print(json.dumps(qs))
