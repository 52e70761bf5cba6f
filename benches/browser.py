#!/usr/bin/env python3
"""One page run in headless Chromium, timed: hubscope's Generate tab (or wllama's bench page)
by deep link, over W3C WebDriver (Debian's chromedriver; standard library only).

Usage: browser.py URL [--runs N] [--timeout S] [--js-flags FLAGS]

URL is a page that runs on load and fills, when done, #status = "done", #tok-s (decode
tokens/s), #prefill-tok-s (prompt tokens/s), #first-token (seconds from the run's start to the
first token) and #output: hubscope's `/?…&autorun=1` links do, and so does
benches/wllama/index.html. Each run opens URL afresh in the same browser (so the second and
later runs read the weights from the browser's cache). While a run goes, a script round trip
is timed every 250 ms (the page's responsiveness) and the peak resident memory of the
browser's renderer processes (VmHWM of the page's renderer, worker included) is read at the
end. Prints one JSON line per run.
"""
import argparse
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def call(base, method, path, body=None, timeout=600):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.load(r)["value"]
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"webdriver {path}: {e.code} {e.read()[:400]!r}") from None


def renderer_peaks():
    """VmHWM (kB) of every Chromium renderer process, by pid."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if b"--type=renderer" not in open(f"/proc/{pid}/cmdline", "rb").read():
                continue
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmHWM:"):
                    out[pid] = int(line.split()[1])
        except OSError:
            pass
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--js-flags", default="")
    ap.add_argument("--trace", action="store_true", help="print every slow answer (> 0.3 s)")
    a = ap.parse_args()
    port = free_port()
    driver = subprocess.Popen(["chromedriver", f"--port={port}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/status", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    profile = tempfile.mkdtemp()
    args = ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}"]
    if a.js_flags:
        args.append(f"--js-flags={a.js_flags}")
    caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
        "binary": "/usr/bin/chromium", "args": args}}}}
    r = urllib.request.Request(base + "/session", data=json.dumps(caps).encode(),
                               headers={"Content-Type": "application/json"})
    session = json.load(urllib.request.urlopen(r))["value"]["sessionId"]
    s = f"/session/{session}"
    js = lambda script: call(base, "POST", s + "/execute/sync", {"script": script, "args": []})
    text = lambda i: js(f"const e = document.getElementById('{i}'); return e ? e.textContent : '';")
    try:
        for run in range(a.runs):
            call(base, "POST", s + "/url", {"url": "about:blank"})
            t0 = time.time()
            call(base, "POST", s + "/url", {"url": a.url})
            worst, status, err = 0.0, "", ""
            while time.time() - t0 < a.timeout:
                t = time.time()
                status = text("status")
                took = time.time() - t
                worst = max(worst, took)
                if a.trace and took > 0.3:
                    print(f"# {t - t0:.1f} s: answered in {took:.2f} s; {text('phase')}", flush=True)
                err = text("error")
                if status == "done" or err:
                    break
                time.sleep(0.25)
            peaks = renderer_peaks()
            print(json.dumps({
                "run": run + 1,
                "status": status,
                "error": err,
                "wall_s": round(time.time() - t0, 2),
                "first_token_s": text("first-token"),
                "prefill_tok_s": text("prefill-tok-s"),
                "decode_tok_s": text("tok-s"),
                "output": text("output"),
                "page_answer_worst_s": round(worst, 3),
                "renderer_peak_rss_kb": max(peaks.values()) if peaks else None,
            }, ensure_ascii=False), flush=True)
    finally:
        try:
            call(base, "DELETE", s)
        except OSError:
            pass
        driver.kill()


if __name__ == "__main__":
    main()
