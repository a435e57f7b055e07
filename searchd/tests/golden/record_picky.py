#!/usr/bin/env python3
"""Replays a query list against a running Picky app and records its answers.

Usage: record_picky.py PORT PATH QUERIES OUT

PATH is the app's route (`/agora`). Input and output lines are those of
/work/shared/picky/make_golden.py (which is fixed to `/books`): each output
line is the input's id, note and params plus path, url, status,
content_type, body (parsed, duration 0) and body_text (the exact bytes,
duration value replaced by 0).
"""
import http.client
import json
import re
import sys
import urllib.parse

port, path, queries, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
DURATION = re.compile(r'"duration":[^,}]*')

with open(queries, encoding="utf-8") as f, open(out, "w", encoding="utf-8") as o:
    for line in f:
        entry = json.loads(line)
        params = entry["params"]
        url = path + "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe="")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", url)
        resp = conn.getresponse()
        raw = resp.read().decode("utf-8", errors="replace")
        ctype = resp.getheader("Content-Type")
        conn.close()
        try:
            body = json.loads(raw)
            if isinstance(body, dict) and "duration" in body:
                body["duration"] = 0
        except ValueError:
            body = raw
        rec = {
            "id": entry["id"],
            "note": entry.get("note"),
            "path": path,
            "url": url,
            "params": params,
            "status": resp.status,
            "content_type": ctype,
            "body": body,
            "body_text": DURATION.sub('"duration":0', raw),
        }
        o.write(json.dumps(rec, ensure_ascii=False) + "\n")
