"""Replicas and shutdown, with real processes: RPC calls spread over replicas, and SIGTERM
lets a replica finish what it is doing before it exits."""
import signal
import threading
import time

from crm_common.messaging.rpc import RpcPool


def test_rpc_calls_are_spread_over_replicas(stack):
    stack.start_service("deals", 1)
    try:
        pool = RpcPool(stack.amqp_uri, size=8, timeout=10)
        deadline = time.time() + 30
        pids = set()
        while len(pids) < 2 and time.time() < deadline:
            # concurrent calls: each replica takes its share of the queue
            results = []
            threads = [threading.Thread(target=lambda: results.append(pool.call("deals", "ping", 0.2)))
                       for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            pids |= {r["pid"] for r in results}
        assert len(pids) == 2, pids
        pool.close()
    finally:
        stack.stop_service("deals", 1)


def test_sigterm_finishes_work_in_flight_then_exits(stack):
    stack.start_service("notifications", 1)
    stack.stop_service("notifications", 0)  # every call now goes to replica 1
    try:
        pool = RpcPool(stack.amqp_uri, size=2, timeout=15)
        pool.call("notifications", "ping")
        answer = {}
        slow = threading.Thread(target=lambda: answer.update(pool.call("notifications", "ping", 3)))
        slow.start()
        time.sleep(1)  # the call is being worked on
        process = stack.processes["notifications-1"]
        process.send_signal(signal.SIGTERM)
        slow.join(15)
        assert answer.get("ok") is True  # the call in flight got its answer
        process.wait(20)
        assert process.returncode is not None
        pool.close()
    finally:
        stack.processes.pop("notifications-1", None)
        stack.start_service("notifications", 0)
        stack.wait_service("notifications")
