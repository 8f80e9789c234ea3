"""Fault injection on the network path: a TCP proxy that can be cut and restored."""
import socket
import threading


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to a target. cut() closes every connection and refuses
    new ones (the peer sees the broker vanish); restore() accepts again."""

    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.open = True
        self.sockets = set()
        self.clients = set()
        self.hung_up = set()  # clients told EOF whose writes are dropped (see hang_up)
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets |= {client, upstream}
                self.clients.add(client)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if source not in self.hung_up:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def cut(self):
        self.open = False
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets.clear()

    def hang_up(self):
        """What a client sees when the broker closes its connection: it reads EOF, yet a
        write still succeeds and goes nowhere (here: dropped). New connections are taken."""
        with self.lock:
            for client in self.clients - self.hung_up:
                self.hung_up.add(client)
                try:
                    client.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

    def restore(self):
        self.open = True

    def close(self):
        self.cut()
        self.server.close()


class PrivateBroker:
    """A RabbitMQ node of its own (own name, ports, data, pid file), so a test or the soak
    can stop and restart a real broker without touching the machine's shared one."""

    def __init__(self):
        import os
        import pwd
        import tempfile
        from tests.stack import free_port
        self.dir = tempfile.mkdtemp(prefix="crm-rmq-")
        self.port, self.dist_port = free_port(), free_port()
        self.name = f"crm{self.port}@localhost"
        with open(os.path.join(self.dir, "rabbitmq.conf"), "w") as conf:
            conf.write(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        with open(os.path.join(self.dir, "enabled_plugins"), "w") as plugins:
            plugins.write("[].\n")
        try:  # the server drops to the rabbitmq user when started as root
            user = pwd.getpwnam("rabbitmq")
            for folder, _, files in os.walk(self.dir):
                os.chown(folder, user.pw_uid, user.pw_gid)
                for name in files:
                    os.chown(os.path.join(folder, name), user.pw_uid, user.pw_gid)
        except (KeyError, PermissionError):
            pass
        self.env = dict(os.environ, RABBITMQ_NODENAME=self.name, RABBITMQ_NODE_PORT=str(self.port),
                        RABBITMQ_DIST_PORT=str(self.dist_port),
                        RABBITMQ_CONFIG_FILE=os.path.join(self.dir, "rabbitmq.conf"),
                        RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(self.dir, "enabled_plugins"),
                        RABBITMQ_MNESIA_BASE=os.path.join(self.dir, "mnesia"),
                        RABBITMQ_LOG_BASE=os.path.join(self.dir, "log"),
                        RABBITMQ_PID_FILE=os.path.join(self.dir, "pid"))
        self.uri = f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _open(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def start(self, timeout=90):
        import subprocess
        import time
        subprocess.Popen(["rabbitmq-server"], env=self.env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + timeout
        while not self._open():
            if time.time() > deadline:
                raise RuntimeError("private RabbitMQ did not start")
            time.sleep(0.3)
        return self

    def pid(self):
        import os
        try:
            return int(open(os.path.join(self.dir, "pid")).read().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout=60):
        import os
        import signal
        import time
        pid = self.pid()
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + timeout
        while self._open() and time.time() < deadline:
            time.sleep(0.2)
        while pid and time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)

    def close(self):
        import shutil
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
