"""Sales documents speed: a 50-line quote rendered to PDF (the service's template path
beside fpdf2 drawing the same rows alone), invoices numbered concurrently from 16 clients
through the gateway (checked: no gap, no duplicate) beside the counter's transaction done
directly with pymongo, and a large file uploaded and downloaded with each process's memory
(RSS) before and after.

    .venv/bin/python bench/bench_documents.py [--invoices 1000] [--clients 16] [--file-mb 100]

Starts an isolated stack (tests/stack.py) unless --url is given.
"""
import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import requests  # noqa: E402

from bench.common import Platform, cpu_note, cpu_seconds, load_average  # noqa: E402
from services.sales.money import document_totals, line_figures  # noqa: E402
from services.sales.pdf import pdf_alone, render_pdf  # noqa: E402


def fifty_lines():
    lines = []
    for n in range(50):
        line = {"name": f"Articolo {n} con descrizione", "quantity_milli": 1000 + n * 250,
                "unit_price": 1999 + n * 7, "tax_bp": 2200 if n % 3 else 1000,
                "discount_bp": 500 if n % 4 == 0 else None, "discount_amount": None}
        line.update(line_figures(line["quantity_milli"], line["unit_price"], line["tax_bp"],
                                 line["discount_bp"] or 0))
        lines.append(line)
    return lines


def bench_pdf(repeat):
    lines = fifty_lines()
    doc = {"kind": "quote", "number": "Q-2026-00001", "version": 1, "currency": "EUR",
           "lines": lines, "totals": document_totals(lines), "issue_date": "2026-01-01",
           "valid_until": "2026-02-01", "seller": {"name": "ACME"}, "client": {"name": "Client"}}
    print(f"50-line quote to PDF, {repeat} renders each (this process, one core):")
    for language in ("it", "he"):
        started = time.perf_counter()
        for _ in range(repeat):
            render_pdf({**doc, "language": language})
        took = (time.perf_counter() - started) / repeat
        print(f"  template + fpdf2 write_html ({language}): {took * 1000:.0f} ms per quote")
    rows = [(l["name"], l["quantity_milli"], l["unit_price"], l["net"]) for l in lines]
    started = time.perf_counter()
    for _ in range(repeat):
        pdf_alone(rows)
    print(f"  fpdf2 alone, the same rows as cells: {(time.perf_counter() - started) / repeat * 1000:.0f} ms")


def rss_mb(platform, part):
    total = 0
    for key, proc in platform.stack.processes.items():
        if key.rsplit("-", 1)[0] != part:
            continue
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    session = int(f.read().rpartition(")")[2].split()[3])
                if session != proc.pid:
                    continue
                with open(f"/proc/{name}/status") as f:
                    total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
            except (OSError, StopIteration):
                continue
    return total / 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--file-mb", type=int, default=100)
    parser.add_argument("--pdf-repeat", type=int, default=5)
    args = parser.parse_args()

    bench_pdf(args.pdf_repeat)
    platform = Platform()
    stack = platform.stack
    headers = platform.auth_headers()
    base = stack.base_url + "/api/v1"
    session = requests.Session()
    session.headers.update(headers)
    try:
        tag = str(time.time_ns())[-8:]
        product = session.post(f"{base}/products", json={"sku": f"B{tag}", "name": "Bench",
                                                         "tax_rate": "22"}).json()
        prices = session.post(f"{base}/price-lists", json={"name": "b", "currency": "EUR",
                                                           "is_default": True}).json()
        session.put(f"{base}/price-lists/{prices['id']}/prices",
                    json={"prices": [{"product_id": product["id"], "unit_price": 1000}]})
        deal = session.post(f"{base}/deals", json={"title": "bench", "currency": "EUR"}).json()
        for n in range(50):
            session.post(f"{base}/deals/{deal['id']}/items", json={"product_id": product["id"],
                                                                   "quantity": n + 1})
        quote = session.post(f"{base}/quotes", json={"deal_id": deal["id"]}).json()
        started = time.perf_counter()
        for _ in range(args.pdf_repeat):
            assert session.get(f"{base}/quotes/{quote['id']}/pdf").status_code == 200
        print(f"  GET /quotes/{{id}}/pdf (50 lines, through the gateway): "
              f"{(time.perf_counter() - started) / args.pdf_repeat * 1000:.0f} ms")

        # numbering
        numbers, errors = [], []
        # the remainder spread over the first clients, so exactly --invoices are asked for
        shares = [args.invoices // args.clients + (i < args.invoices % args.clients)
                  for i in range(args.clients)]

        def issue(share):
            client = requests.Session()
            client.headers.update(headers)
            for _ in range(share):
                r = client.post(f"{base}/invoices", json={"deal_id": deal["id"]}, timeout=60)
                (numbers if r.status_code == 201 else errors).append(
                    r.json().get("number") if r.status_code == 201 else r.status_code)

        before = cpu_seconds(platform)
        started = time.perf_counter()
        threads = [threading.Thread(target=issue, args=(share,)) for share in shares]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.perf_counter() - started
        seqs = sorted(int(n.rsplit("-", 1)[1]) for n in numbers)
        gapless = seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else False
        print(f"invoices: {len(numbers)} from {args.clients} clients in {took:.1f} s = "
              f"{len(numbers) / took:.0f}/s; errors {errors[:5]}; no gap and no duplicate: {gapless}")
        print("  " + cpu_note(before, cpu_seconds(platform), max(1, len(numbers))))
        raw = stack.mongo[f"{stack.db_prefix}bench_raw"]
        counters, docs = raw["counters"], raw["docs"]
        counters.insert_one({"_id": "k", "n": 0})
        docs.insert_one({"_id": "warm"})
        started = time.perf_counter()
        for _ in range(200):
            with stack.mongo.start_session() as s:
                with s.start_transaction():
                    n = counters.find_one_and_update({"_id": "k"}, {"$inc": {"n": 1}}, session=s,
                                                     return_document=True)["n"]
                    docs.insert_one({"n": n}, session=s)
        print(f"  pymongo counter + insert in one transaction, 1 client: "
              f"{200 / (time.perf_counter() - started):.0f}/s")

        # a large file, up and down
        contact = session.post(f"{base}/contacts", json={"first_name": "File", "last_name": tag}).json()
        size = args.file_mb * 1024 * 1024
        path = os.path.join(stack.log_dir, f"bench-{tag}.bin")
        with open(path, "wb") as f:
            block = os.urandom(1024 * 1024)
            for _ in range(args.file_mb):
                f.write(block)
        memory = {p: rss_mb(platform, p) for p in ("sales", "gateway")}
        started = time.perf_counter()
        with open(path, "rb") as f:
            up = session.post(f"{base}/files", params={"record_type": "contact", "record_id": contact["id"]},
                              files={"file": ("big.bin", f)}, timeout=600)
        up_s = time.perf_counter() - started
        after_up = {p: rss_mb(platform, p) for p in memory}
        started = time.perf_counter()
        got = 0
        with session.get(f"{base}/files/{up.json()['id']}/download", stream=True, timeout=600) as r:
            for chunk in r.iter_content(1024 * 1024):
                got += len(chunk)
        down_s = time.perf_counter() - started
        after_down = {p: rss_mb(platform, p) for p in memory}
        os.remove(path)
        print(f"file of {args.file_mb} MB: upload {up_s:.1f} s ({args.file_mb / up_s:.0f} MB/s, "
              f"status {up.status_code}), download {down_s:.1f} s ({got == size and 'complete'})")
        for part in memory:
            print(f"  {part} RSS MB: before {memory[part]:.0f}, after upload {after_up[part]:.0f}, "
                  f"after download {after_down[part]:.0f}")
        print("  " + load_average())
    finally:
        platform.close()


if __name__ == "__main__":
    main()
