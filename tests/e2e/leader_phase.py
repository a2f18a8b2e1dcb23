"""Issue 28 on the real stack: two sidecars with leader election through the Lease server stand-in
(tests/lease_server, run as the `lease-server` example), against the same Postgres, Debezium, tansu and Flink.

Three faults, in order, each ending with the sink equal to Postgres:
1. kill -9 of the leader during a burst: the standby leads within the lease duration plus its polling, adopts the
   running jobs, and finishes the burst's work. The failover time (kill to the new leader's first action) is
   measured.
2. SIGSTOP of the leader for longer than the lease: the other takes over; after SIGCONT the old leader must not
   start, stop or cancel anything (its log, and Flink's job list sampled throughout).
3. The leader cut off from the Lease server only (its token's requests hang): it stops acting within the renew
   deadline, and the other takes over.
The driver's job sampler checks, throughout, that no table ever has two live jobs.
"""

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

LEASE_S, RENEW_S, RETRY_S = 15, 10, 2
# The acquire loop waits a retry period plus up to 20% jitter (client-go's JitterFactor 1.2 over a base of one).
POLL_MAX_S = RETRY_S * 1.2
# Actions of a sidecar on Flink, as its log names them: any of these after a replica stopped leading is a fault.
ACTIONS = ("Successfully triggered job for", "Stopped idle job for", "Stopped job for", "adopted running job",
           "failed to start job for")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class LeaseServer:
    """The stand-in, as a process: its API URL, control URL and CA file."""

    def __init__(self, binary, work, tokens):
        self.ca = os.path.join(work, "lease-ca.pem")
        args = [binary, "--ca-out", self.ca]
        for token in tokens:
            args += ["--token", token]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True,
                                     stderr=open(os.path.join(work, "lease-server.log"), "a"))
        urls = {}
        deadline = time.time() + 30
        while len(urls) < 2 and time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"lease-server exited with {self.proc.poll()}")
            key, _, value = line.strip().partition("=")
            urls[key] = value
        self.url, self.control = urls["url"], urls["control"]

    def post(self, what, **query):
        q = "&".join(f"{k}={v}" for k, v in query.items())
        req = urllib.request.Request(f"{self.control}/{what}?{q}", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()

    def holder(self, ns, name):
        try:
            with urllib.request.urlopen(f"{self.control}/lease?ns={ns}&name={name}", timeout=5) as r:
                lease = json.load(r)
        except (urllib.error.URLError, ValueError):
            return None
        return ((lease or {}).get("spec") or {}).get("holderIdentity")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def http(url, method="GET", timeout=5):
    """(status, parsed JSON body or text) of a request; never raises for an HTTP status."""
    # The control API takes state-changing requests as JSON only (a browser's form cannot post to it).
    req = urllib.request.Request(url, data=b"" if method == "POST" else None, method=method,
                                 headers={"Content-Type": "application/json"} if method == "POST" else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except Exception as e:  # noqa: BLE001 - down is an answer here
        return None, str(e)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def actions(lines):
    return [e for e in lines if any(e["msg"].startswith(a) for a in ACTIONS)]


def leader_election(e2e, sidecar_class, free_port, wait_until):
    """The phase; `e2e` is the driver (checks, workload, quiesce), its single sidecar stopped here and the two
    sidecars stopped at the end."""
    c = e2e.checks
    a = e2e.args
    log("point 10 (issue 28): two sidecars, one Lease")
    tokens = {"sidecar-a": "token-a", "sidecar-b": "token-b"}
    server = LeaseServer(a.lease_server, a.work, tokens.values())
    report = {}
    replicas = {}
    for identity, token in tokens.items():
        token_file = os.path.join(a.work, f"{identity}.token")
        with open(token_file, "w") as f:
            f.write(token)
        env = {
            "CDC_LEADER_ELECTION__ENABLED": "true",
            "CDC_LEADER_ELECTION__IDENTITY": identity,
            "CDC_LEADER_ELECTION__NAMESPACE": "e2e",
            "CDC_LEADER_ELECTION__LEASE_NAME": "cdc-orchestrator",
            "CDC_LEADER_ELECTION__API_SERVER": server.url,
            "CDC_LEADER_ELECTION__CA_FILE": server.ca,
            "CDC_LEADER_ELECTION__TOKEN_FILE": token_file,
            "CDC_LEADER_ELECTION__LEASE_DURATION": f"{LEASE_S}s",
            "CDC_LEADER_ELECTION__RENEW_DEADLINE": f"{RENEW_S}s",
            "CDC_LEADER_ELECTION__RETRY_PERIOD": f"{RETRY_S}s",
        }
        port = free_port()
        env["CDC_SERVER__LISTEN"] = f"127.0.0.1:{port}"
        replicas[identity] = sidecar_class(a, a.work, name=identity, url=f"http://127.0.0.1:{port}", env=env)

    def role(s):
        status, body = http(f"{s.url}/readyz")
        return status, body

    def busy():
        """A burst to `tables`, until each has its job RUNNING."""
        e2e.workload.burst(tables, 3)
        wait_until("the burst's jobs RUNNING", 120, lambda: set(e2e.running_jobs(tables)) == set(tables))

    def leads_within(s, seconds):
        """Whether `s` is ready (leads) within `seconds`."""
        try:
            wait_until(f"{s.log_path} leads", seconds, lambda: role(s)[0] == 200, interval=0.2)
            return True
        except TimeoutError:
            return False

    tables = ["faculty", "room"]
    original = e2e.sidecar
    try:
        original.stop(signal.SIGTERM)
        sa, sb = replicas["sidecar-a"], replicas["sidecar-b"]
        sa.start()
        leads_within(sa, 30)
        sb.start()
        time.sleep(2 * RETRY_S)
        status_a, _ = role(sa)
        status_b, body_b = role(sb)
        c.check("leader election: the first sidecar leads (/readyz 200), the second stands by (/readyz 503 naming it)",
                status_a == 200 and status_b == 503 and "standby" in json.dumps(body_b)
                and "sidecar-a" in json.dumps(body_b), f"a {status_a}, b {status_b} {str(body_b)[:200]}")
        _, tables_b = http(f"{sb.url}/tables")
        roles = {t.get("role") for t in tables_b} if isinstance(tables_b, list) else {None}
        status, body = http(f"{sb.url}/tables/faculty/trigger", method="POST")
        c.check("leader election: the standby's /tables says standby; its control POSTs answer 503 naming the leader",
                roles == {"standby"} and status == 503 and "sidecar-a" in json.dumps(body),
                f"roles {roles}; POST {status} {str(body)[:200]}")
        e2e.sidecar = sa

        # 1. kill -9 of the leader during a burst.
        mark_b = len(sb.lines())
        busy()
        running = e2e.running_jobs(tables)
        e2e.workload.burst(tables, 2)
        sa.stop(signal.SIGKILL)
        killed_at = time.time()
        e2e.workload.burst(tables, 3)
        leads_within(sb, LEASE_S + 4 * RETRY_S + 10)
        e2e.sidecar = sb
        diffs = e2e.quiesce()
        lines = sb.lines()[mark_b:]
        became = [x for x in lines if x["msg"] == "became the leader"]
        acted = actions([x for x in lines if became and x["ts"] >= became[0]["ts"]])
        adopted = {x["f"].get("job_id") for x in lines if x["msg"] == "adopted running job"}
        lead_s = round(became[0]["ts"] / 1000 - killed_at, 1) if became else None
        act_s = round(acted[0]["ts"] / 1000 - killed_at, 1) if acted else None
        bound = LEASE_S + 2 * POLL_MAX_S + 1
        c.check(f"kill -9 of the leader: the standby leads within the lease duration and its polling ({bound:.1f} s)",
                lead_s is not None and lead_s <= bound, f"led after {lead_s} s")
        c.check("kill -9 of the leader: the new leader adopted the running jobs",
                set(running.values()) <= adopted, f"running {running}, adopted {sorted(adopted)}")
        c.check("kill -9 of the leader: sink equals Postgres afterwards", not diffs, "; ".join(diffs))
        report["kill -9: leader killed -> new leader (s)"] = lead_s
        report["kill -9: leader killed -> its first action (s)"] = act_s
        report["kill -9: first action"] = acted[0]["msg"] if acted else None

        # 2. SIGSTOP of the leader (b) past the lease; a takes over; SIGCONT b, which must not act again.
        sa.start()
        time.sleep(2 * RETRY_S)
        busy()
        mark_b = len(sb.lines())
        sb.proc.send_signal(signal.SIGSTOP)
        stopped_at = time.time()
        e2e.workload.burst(tables, 2)
        leads_within(sa, LEASE_S + 4 * RETRY_S + 10)
        took_over_s = round(time.time() - stopped_at, 1)
        # Past the old leader's idle timers and retries: what it had in mind when paused would be due now.
        time.sleep(3)
        sb.proc.send_signal(signal.SIGCONT)
        resumed_at = time.time()
        e2e.workload.burst(tables, 2)
        e2e.sidecar = sa
        diffs = e2e.quiesce()
        lines_b = [x for x in sb.lines()[mark_b:] if x["ts"] >= resumed_at * 1000 - 500]
        acted_b = actions(lines_b)
        stepped = [x for x in lines_b if x["msg"] in ("stopped leading", "standing by: another replica leads")]
        c.check("SIGSTOP of the leader: the other sidecar led while it was paused",
                role(sa)[0] == 200, f"after {took_over_s} s")
        c.check("SIGSTOP of the leader: after SIGCONT it started, stopped or cancelled nothing, and stood by",
                not acted_b and stepped and role(sb)[0] == 503,
                f"actions {[(x['msg'], x['f'].get('table')) for x in acted_b][:4]}, stood by {bool(stepped)}")
        c.check("SIGSTOP of the leader: sink equals Postgres afterwards", not diffs, "; ".join(diffs))
        refused = [x for x in lines_b if "not sent" in json.dumps(x.get("f", {}))]
        report["SIGSTOP: paused -> other leads (s)"] = took_over_s
        report["SIGSTOP: calls the old leader's guard held back after SIGCONT"] = len(refused)

        # 3. The leader (a) cut off from the Lease server only.
        busy()
        mark_a, mark_b = len(sa.lines()), len(sb.lines())
        server.post("block", token=tokens["sidecar-a"], how="hang")
        cut_at = time.time()
        e2e.workload.burst(tables, 2)
        leads_within(sb, LEASE_S + RENEW_S + 10)
        e2e.sidecar = sb
        lines_a = sa.lines()[mark_a:]
        stepped = [x for x in lines_a if x["msg"] == "stopped leading"]
        stepped_s = round(stepped[0]["ts"] / 1000 - cut_at, 1) if stepped else None
        after_step = actions([x for x in lines_a if stepped and x["ts"] > stepped[0]["ts"]])
        b_led = [x for x in sb.lines()[mark_b:] if x["msg"] == "became the leader"]
        b_led_s = round(b_led[0]["ts"] / 1000 - cut_at, 1) if b_led else None
        c.check(f"cut off from the Lease server: the leader stopped acting within the renew deadline ({RENEW_S} s)",
                stepped_s is not None and stepped_s <= RENEW_S + 0.5 and not after_step,
                f"stopped leading after {stepped_s} s; actions after {len(after_step)}")
        c.check("cut off from the Lease server: the other sidecar took over, after the old leader stopped",
                b_led_s is not None and stepped_s is not None and b_led_s > stepped_s, f"led after {b_led_s} s")
        diffs = e2e.quiesce()
        c.check("cut off from the Lease server: sink equals Postgres afterwards", not diffs, "; ".join(diffs))
        server.post("unblock", token=tokens["sidecar-a"])
        report["cut off: cut -> old leader stopped (s)"] = stepped_s
        report["cut off: cut -> other leads (s)"] = b_led_s
    finally:
        for s in replicas.values():
            if s.proc is not None:
                try:
                    s.proc.send_signal(signal.SIGCONT)
                except ProcessLookupError:
                    pass
                s.stop(signal.SIGTERM)
        server.stop()
        e2e.sidecar = original
    e2e.leader_report = report
    log(f"leader election: {json.dumps(report)}")
