"""End to end with the real servers: kerntrace's biolatency in exporter
mode writes a node_exporter textfile and serves /metrics; the real
prometheus-node-exporter (textfile collector only) and a real prometheus
server scrape them; PromQL over the HTTP API must give the I/O count of a
known workload on our own loop device and a histogram_quantile equal to
the one the exposition kerntrace wrote implies.  On the eBPF and the
ftrace backend."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import pytest

import clirun
import kernstate
import workloads

pytestmark = [pytest.mark.live]

WRITES = 200
QUANTILES = (0.5, 0.9, 0.99)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def query(port, promql):
    """[(labels, float value)] of an instant PromQL query."""
    body = json.loads(http_get("http://127.0.0.1:%d/api/v1/query?%s"
                               % (port, urllib.parse.urlencode({"query": promql}))))
    assert body["status"] == "success", body
    return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]


def wait_until(what, predicate, timeout=60, step=0.25):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, ValueError) as e:   # a server not listening yet
            last = e
        time.sleep(step)
    raise AssertionError("%s: not within %d s (last: %r)" % (what, timeout, last))


def textfile_histogram(text, device):
    """{le: cumulative count} of the block latency series of `device`."""
    buckets = {}
    for line in text.splitlines():
        if (line.startswith("kerntrace_block_io_latency_seconds_bucket{")
                and 'device="%s"' % device in line):
            labels, value = line.rsplit(" ", 1)
            le = labels.split('le="')[1].split('"')[0]
            buckets[float(le)] = int(value)
    return buckets


def prometheus_quantile(q, buckets):
    """histogram_quantile as Prometheus (promql/quantile.go) computes it:
    linear interpolation inside the bucket that holds rank q * count, the
    first bucket starting at 0, the +Inf bucket giving the bound below."""
    bounds = sorted(buckets)
    assert bounds[-1] == float("inf") and len(bounds) >= 2
    rank = q * buckets[bounds[-1]]
    b = next(i for i, le in enumerate(bounds) if buckets[le] >= rank)
    if b == len(bounds) - 1:
        return bounds[-2]
    start = 0.0 if b == 0 else bounds[b - 1]
    count = buckets[bounds[b]] - (buckets[bounds[b - 1]] if b else 0)
    rank -= buckets[bounds[b - 1]] if b else 0
    return start + (bounds[b] - start) * (rank / count)


class Servers(object):
    """node_exporter (textfile collector on `textdir`) and prometheus
    scraping it and kerntrace's own /metrics every second."""

    def __init__(self, tmp, textdir, kerntrace_port):
        self.procs = []
        self.ne_port, self.prom_port = free_port(), free_port()
        for exe in ("prometheus-node-exporter", "prometheus"):
            assert shutil.which(exe), "%s missing: scripts/provision-test-host installs it" % exe
        log = open(os.path.join(tmp, "servers.log"), "w")
        self.procs.append(subprocess.Popen(
            ["prometheus-node-exporter", "--collector.disable-defaults", "--collector.textfile",
             "--collector.textfile.directory=" + textdir,
             "--web.listen-address=127.0.0.1:%d" % self.ne_port],
            stdout=log, stderr=subprocess.STDOUT))
        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n"
                    "  - job_name: node\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n"
                    "  - job_name: kerntrace\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % (self.ne_port, kerntrace_port))
        self.procs.append(subprocess.Popen(
            ["prometheus", "--config.file=" + config,
             "--storage.tsdb.path=" + os.path.join(tmp, "tsdb"),
             "--web.listen-address=127.0.0.1:%d" % self.prom_port],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp))
        log.close()
        wait_until("prometheus ready",
                   lambda: "Ready" in http_get("http://127.0.0.1:%d/-/ready" % self.prom_port))

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def loopdev():
    reason = kernstate.live_skip_reason()
    if reason:
        pytest.skip(reason)
    with workloads.loop_device(size_mb=16, directory="/dev/shm") as dev:
        yield dev


@pytest.mark.parametrize("backend", ["ebpf", "ftrace"])
def test_prometheus_sees_what_kerntrace_measured(backend, loopdev):
    if backend == "ebpf" and kernstate.ebpf_skip_reason():
        pytest.skip(kernstate.ebpf_skip_reason())
    dev = loopdev[0]
    disk = os.path.basename(dev)
    tmp = tempfile.mkdtemp(prefix="kerntrace-e2e-")
    textdir = os.path.join(tmp, "textfile")
    os.mkdir(textdir)
    textfile = os.path.join(textdir, "kerntrace_biolatency.prom")
    kt_port = free_port()
    servers = tool = None
    try:
        servers = Servers(tmp, textdir, kt_port)
        tool = clirun.start(["biolatency", "-D", "-d", disk, "--backend", backend,
                             "--prometheus-file", textfile,
                             "--prometheus-listen", "127.0.0.1:%d" % kt_port, "1"])
        clirun.wait_for_stderr_line(tool, "Tracing with", timeout=120)
        workloads.direct_writes(dev, WRITES)

        def written():
            with open(textfile) as f:
                text = f.read()
            hist = textfile_histogram(text, disk)
            return text if hist and hist[float("inf")] >= WRITES else None

        text = wait_until("kerntrace's textfile counts the writes", written, timeout=30)
        hist = textfile_histogram(text, disk)
        assert hist[float("inf")] == WRITES, text
        selector = 'kerntrace_block_io_latency_seconds%%s{tool="biolatency",device="%s",job="%%s"}' \
            % disk
        for job in ("node", "kerntrace"):
            count = selector % ("_count", job)
            got = wait_until("prometheus has %s" % count,
                             lambda: [v for _, v in query(servers.prom_port, count)
                                      if v == WRITES], timeout=30)
            assert got == [WRITES]
            for q in QUANTILES:
                promql = "histogram_quantile(%s, %s)" % (q, selector % ("_bucket", job))
                (_, value), = query(servers.prom_port, promql)
                assert value == pytest.approx(prometheus_quantile(q, hist), rel=1e-9), promql
        # node_exporter read the file without complaint
        (_, error), = query(servers.prom_port, 'node_textfile_scrape_error{job="node"}')
        assert error == 0
    finally:
        if tool is not None and tool.poll() is None:
            tool.send_signal(signal.SIGTERM)
            out, err = clirun.finish_interrupted(tool)
            assert tool.returncode == 0, err
        if servers is not None:
            servers.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_sighup_rewrites_the_textfile_and_sigterm_ends_the_run(tmp_path):
    reason = kernstate.live_skip_reason()
    if reason:
        pytest.skip(reason)
    textfile = tmp_path / "kt.prom"
    # A 1 s interval writes the file once; the run then reports every 600 s:
    # only SIGHUP can bring a deleted file back within the test.
    tool = clirun.start(["tpcount", "--backend", "ftrace", "-i", "600",
                         "block:block_rq_issue", "--prometheus-file", str(textfile)])
    try:
        clirun.wait_for_stderr_line(tool, "Tracing with", timeout=120)
        time.sleep(0.5)
        tool.send_signal(signal.SIGHUP)     # before the first report: nothing yet
        time.sleep(0.5)
        assert tool.poll() is None, "SIGHUP stopped an exporter"
        assert not textfile.exists()
    finally:
        tool.send_signal(signal.SIGTERM)
        out, err = clirun.finish_interrupted(tool)
    assert tool.returncode == 0, err
    # SIGTERM wrote the last interval
    assert 'kerntrace_lost_events_total{tool="tpcount"} 0' in textfile.read_text()

    tool = clirun.start(["tpcount", "--backend", "ftrace", "-i", "1", "-d", "600",
                         "block:block_rq_issue", "--prometheus-file", str(textfile)])
    try:
        clirun.wait_for_stderr_line(tool, "Tracing with", timeout=120)
        textfile.unlink()
        wait_until("the 1 s interval writes the file", textfile.exists, timeout=30,
                   step=0.01)
        before = textfile.read_text()
        textfile.unlink()
        # The next interval is ~1 s away: a file back within 0.5 s is SIGHUP's.
        tool.send_signal(signal.SIGHUP)
        wait_until("SIGHUP rewrites the file", textfile.exists, timeout=0.5, step=0.01)
        assert tool.poll() is None
        assert textfile.read_text().startswith("# HELP") and before
    finally:
        tool.send_signal(signal.SIGTERM)
        out, err = clirun.finish_interrupted(tool)
    assert tool.returncode == 0, err


def test_listen_port_in_use_is_one_line_before_tracing():
    reason = kernstate.live_skip_reason()
    if reason:
        pytest.skip(reason)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        rc, out, err = clirun.run(["tpcount", "--backend", "ftrace", "-i", "1",
                                   "block:block_rq_issue", "--prometheus-listen",
                                   "127.0.0.1:%d" % busy.getsockname()[1]])
    finally:
        busy.close()
    assert rc == 1 and out == "", err
    assert len(err.splitlines()) == 1 and "cannot listen on 127.0.0.1" in err, err
    assert "Tracing with" not in err
