#!/usr/bin/env python3
"""Faults for the postgres_exporter scenario, made for real in the target's PostgreSQL.

    pgtest [--port P] [--db D] hold-connections N SECONDS
    pgtest [--port P] [--db D] deadlock
    pgtest [--port P] [--db D] long-transaction SECONDS
    pgtest [--port P] [--db D] idle-in-transaction SECONDS
    pgtest [--port P] [--db D] fill MEGABYTES SECONDS

Runs as the system user postgres, connecting through the local socket (peer
authentication); psycopg2 is Debian's, which the role installs. The holding
commands end by themselves after SECONDS, or when their transient unit is
stopped (SIGTERM): a statement that runs is cancelled on the server then.
"""

import argparse
import signal
import sys
import threading
import time

import psycopg2

SOCKET = "/var/run/postgresql"


def connect(args, autocommit=True):
    conn = psycopg2.connect(host=SOCKET, port=args.port, dbname=args.db, user="postgres")
    conn.autocommit = autocommit
    return conn


def hold_connections(args):
    conns = [connect(args) for _ in range(args.n)]
    print(f"holding {len(conns)} connections", flush=True)
    time.sleep(args.seconds)


def deadlock(args):
    """Two sessions lock two rows in opposite orders: the server cancels one of them."""
    setup = connect(args)
    with setup.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS pgtest_deadlock (id int PRIMARY KEY, v int)")
        cur.execute("INSERT INTO pgtest_deadlock VALUES (1, 0), (2, 0) ON CONFLICT DO NOTHING")
    first, second = connect(args, autocommit=False), connect(args, autocommit=False)
    errors = []
    barrier = threading.Barrier(2)

    def session(conn, a, b):
        try:
            with conn.cursor() as cur:
                cur.execute("UPDATE pgtest_deadlock SET v = v + 1 WHERE id = %s", (a,))
                barrier.wait()
                cur.execute("UPDATE pgtest_deadlock SET v = v + 1 WHERE id = %s", (b,))
            conn.commit()
        except psycopg2.errors.DeadlockDetected as error:
            errors.append(str(error).splitlines()[0])
            conn.rollback()

    threads = [
        threading.Thread(target=session, args=(first, 1, 2)),
        threading.Thread(target=session, args=(second, 2, 1)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(errors[0] if errors else "no deadlock", flush=True)
    sys.exit(0 if len(errors) == 1 else 1)


def long_transaction(args):
    """One statement running SECONDS; a stop cancels it on the server too.

    The statement runs in a thread: a signal handler runs only in the main thread,
    between bytecodes, never while psycopg2 waits in libpq. Without the cancel, a
    killed client leaves its backend running pg_sleep to the end.
    """
    conn = connect(args, autocommit=False)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def run():
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_sleep(%s)", (args.seconds,))
        except psycopg2.errors.QueryCanceled:
            pass
        stop.set()

    statement = threading.Thread(target=run)
    statement.start()
    stop.wait(args.seconds + 5)
    conn.cancel()
    statement.join()
    conn.rollback()


def idle_in_transaction(args):
    conn = connect(args, autocommit=False)
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
    time.sleep(args.seconds)
    conn.rollback()


def fill(args):
    """Grow the database by about MEGABYTES, evenly over SECONDS."""
    conn = connect(args)
    steps = max(int(args.seconds), 1)
    per_step = args.megabytes / steps
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS pgtest_fill (payload text)")
        for _ in range(steps):
            started = time.monotonic()
            # Incompressible rows of ~1 kB: md5 text, not TOASTed.
            rows = int(per_step * 1024)
            cur.execute(
                "INSERT INTO pgtest_fill SELECT string_agg(md5(random()::text), '') "
                "FROM generate_series(1, 30) g, generate_series(1, %s) r GROUP BY r",
                (rows,),
            )
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    print("filled", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--db", default="trading")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("hold-connections")
    p.add_argument("n", type=int)
    p.add_argument("seconds", type=float)
    sub.add_parser("deadlock")
    for name in ("long-transaction", "idle-in-transaction"):
        sub.add_parser(name).add_argument("seconds", type=float)
    p = sub.add_parser("fill")
    p.add_argument("megabytes", type=float)
    p.add_argument("seconds", type=float)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    {
        "hold-connections": hold_connections,
        "deadlock": deadlock,
        "long-transaction": long_transaction,
        "idle-in-transaction": idle_in_transaction,
        "fill": fill,
    }[args.command](args)


if __name__ == "__main__":
    main()
