"""A ThreadingHTTPServer on loopback loaded by a bounded client for SECONDS seconds;
prints the number of requests served.  Used by tests/test_continuous.py."""
import http.server
import sys
import threading
import time
import urllib.request


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(fib(16)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    seconds = float(sys.argv[1])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    served = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.read() == b"987"
        served += 1
    server.shutdown()
    server.server_close()
    print(served, flush=True)


if __name__ == "__main__":
    main()
