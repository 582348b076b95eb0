#!/usr/bin/env python3
"""Counts the pairs the `duplicates` tool (the workplace's tool library) reports in non-test
code: both sides outside test files (tests/, *tests.rs, conformance*, benches) and outside
#[cfg(test)] modules.

Usage: scripts/duplicates-outside-tests.py [REPO] [-v]   (-v lists the pairs)"""
import re, subprocess, sys, os
args = [a for a in sys.argv[1:] if a != '-v']
repo = args[0] if args else '.'
out = subprocess.run(['duplicates', '--most', '200', '--seconds', '120'], cwd=repo,
                     capture_output=True, text=True).stdout
cfg_test = {}
def test_from(path):
    if path not in cfg_test:
        n = None
        try:
            for i, l in enumerate(open(os.path.join(repo, path)), 1):
                if l.strip().startswith('#[cfg(test)]'):
                    n = i; break
        except OSError:
            pass
        cfg_test[path] = n
    return cfg_test[path]
def is_test(side):
    path, rng = side.rsplit(':', 1)
    start = int(rng.split('-')[0])
    if re.search(r'(^|/)tests?(/|\.rs$)|tests\.rs$|conformance|/benches/', path):
        return True
    t = test_from(path)
    return t is not None and start >= t
rows = [l for l in out.splitlines() if re.match(r'^D\d+ ', l)]
keep = []
for r in rows:
    parts = r.split()
    a, b = parts[1], parts[3]
    if not is_test(a) and not is_test(b):
        keep.append(r)
print(out.splitlines()[0])
print(f'non-test pairs: {len(keep)}  (sql migrations among them: {sum(".sql" in r for r in keep)})')
if '-v' in sys.argv:
    print('\n'.join(keep))
