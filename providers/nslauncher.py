"""The resident job launcher: one small process per apply that starts each local job straight into namespaces
of its own, with no `unshare` or `mount` program run per job.

`providers.sandbox.Launcher` starts it once (`python -I -S nslauncher.py FD`, so it imports nothing but the
standard library and stays small: each job is a fork of it) and talks to it over a SOCK_SEQPACKET socket, one
message per packet. The apply's messages are `marshal` dumps of plain dicts (the launcher runs the apply's own
interpreter, so both ends speak one marshal version, and only the apply holds the socket; parsing JSON was a
quarter of the launcher's own time per job); the launcher's answers are JSON text:

    -> {"op": "env", "id": 1, "env": {...}}        (an environment kept for the spawns that name it)
    -> {"op": "spawn", "id": 7, "argv": [...], "env_base": 1, "env": {...}, "unset": [...], "cwd": ...,
        "workflow": ..., "hide": [...]}
       with two descriptors attached (SCM_RIGHTS): the job's stdout/stderr, and the job's own reply socket; the
       job's environment is the base named, without `unset`, with `env` set over it
    -> {"op": "kill", "id": 7, "sig": 15}          (ignored once the job has been reaped: no pid reuse race)
    -> {"op": "hold", "why": "..."}               (nothing held back starts any more: see below)

A spawn may say `"running": N`: the launcher then runs at most N jobs at once and holds the others back, in the
order they came, starting the next the moment a running one has been reaped. The apply sends a few starts ahead
of its `--parallelism`, so a job slot never waits for the apply's own bookkeeping between two jobs. After a
`hold` (the apply stops: a failure, a Ctrl-C, a lost lock) every start held back, and every later one, is
answered `{"op": "failed", "held": true, "error": why}` instead of starting. A spawn may also say `"start_by": T`
(time.monotonic(): the same clock here): until then the apply can show it holds the state lock. A start whose
turn comes later is answered `{"op": "failed", "expired": true}`: the apply asks its lock again and sends it again
(so this launcher never starts a job for an apply that may have lost its lock, even one that is paused).

Each job's answers go back on its own reply socket (so the thread that started the job hears them itself, with
no reader thread to hand them on), which the launcher closes after the last:

    <- {"op": "started", "pid": 4242}    or    {"op": "failed", "error": "..."}
    <- {"op": "exited", "code": 0}        (negative: killed by that signal)

A reply socket that closes without an `exited` means the launcher is gone.

Each job is one `clone(CLONE_NEWNS | CLONE_NEWPID)`: the child is PID 1 of a new PID namespace, so every process
it starts ends when it ends (the kernel kills the rest of the namespace), and has a private mount namespace in
which the job folder is bound at /workflow, each hidden folder (the project's .flows/) is an empty read-only
tmpfs, the project is bound at /mnt/code and /proc shows the namespace's own processes. Then it execs
`bash -c`, which stays PID 1 (reaping orphans) with the command run under it, exactly as the `unshare` path
did. The child leads its own session and process group (a stop signals the group) and dies with the launcher
(PR_SET_PDEATHSIG). When the socket closes (the apply ended or died) every job still running is killed.
"""
import array
import collections
import ctypes
import json
import marshal
import os
import platform
import select
import signal
import socket
import sys
import time

CLONE_NEWNS, CLONE_NEWPID = 0x00020000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_PDEATHSIG = 1
SYS_CLONE = {"x86_64": 56, "aarch64": 220}.get(platform.machine())  # raw clone: fork with namespace flags
WORKFLOW, CODE = b"/workflow", b"/mnt/code"
MAX_MESSAGE = 1 << 20
# The fork in C (nsspawn.c), when `make` built it: the child shares this process's memory until its exec, so
# nothing of this Python process is copied per job. FLOWS_LAUNCHER_FORK=python keeps the Python fork below.
NSSPAWN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_nsspawn.so")
SPAWN_STEPS = {1: "setsid", 2: "prctl", 3: "signal mask", 4: "mount /", 5: "mount /workflow", 6: "mount (hidden folder)",
               7: "mount /mnt/code", 8: "mount /proc", 9: "stdin/stdout/stderr", 10: "chdir", 11: "exec"}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _Job(ctypes.Structure):
    _fields_ = [("workflow", ctypes.c_char_p), ("hidden", ctypes.POINTER(ctypes.c_char_p)),
                ("code", ctypes.c_char_p), ("path", ctypes.c_char_p), ("argv", ctypes.POINTER(ctypes.c_char_p)),
                ("envp", ctypes.POINTER(ctypes.c_char_p)), ("log_fd", ctypes.c_int), ("failed_step", ctypes.c_int),
                ("failed_errno", ctypes.c_int)]


def _load_nsspawn(which):
    """flows_spawn of the built nsspawn.c, or None (not built, not wanted, or not loadable here)."""
    if which == "python" or not os.path.isfile(NSSPAWN):
        return None
    try:
        spawn = ctypes.CDLL(NSSPAWN, use_errno=True).flows_spawn
    except (OSError, AttributeError):
        return None
    spawn.argtypes = [ctypes.POINTER(_Job)]
    spawn.restype = ctypes.c_int
    return spawn


_c_spawn = _load_nsspawn(os.environ.get("FLOWS_LAUNCHER_FORK"))


def _strings(values):
    array = (ctypes.c_char_p * (len(values) + 1))()
    array[:len(values)] = values
    return array


class _Environments:
    """The environments the apply sent once (`env` messages), by id; a spawn names one and says what differs."""

    def __init__(self):
        self.bases = {}  # id -> _Base (only the last is used)

    def keep(self, base_id, env):
        self.bases = {base_id: _Base(env)}

    def of(self, req):
        """The job's environment: a dict, and its entries encoded for execve (in the base's order)."""
        base = self.bases[req["env_base"]]
        if not req["env"] and not req["unset"]:
            return base.env, list(base.encoded.values())
        env, entries = dict(base.env), dict(base.encoded)
        for k in req["unset"]:
            env.pop(k, None)
            entries.pop(k, None)
        for k, v in req["env"].items():
            env[k] = v
            entries[k] = _env_entry(k, v)
        return env, list(entries.values())

    def envp(self, req):
        """The job's environment as execve's C array, for the C spawn: the base's array copied with the few
        variables that differ set in place (building some fifty C strings per job was a sixth of this process's
        time), or made whole when a variable is unset or new."""
        base = self.bases[req["env_base"]]
        if req["unset"] or any(k not in base.index for k in req["env"]):
            return _strings(self.of(req)[1])
        count = len(base.index)
        envp = (ctypes.c_char_p * (count + 1))()
        ctypes.memmove(envp, base.array, count * ctypes.sizeof(ctypes.c_char_p))
        envp._base = base.array  # (what the copied pointers point into lives as long as this array)
        for k, v in req["env"].items():
            envp[base.index[k]] = _env_entry(k, v)  # (the array keeps the new string alive)
        return envp


class _Base:
    """One environment the apply sent: as a dict, its "NAME=value" strings by name, each name's place, and
    those strings as a C array (kept: every job's array starts as a copy of it)."""

    def __init__(self, env):
        self.env = env
        self.encoded = {k: _env_entry(k, v) for k, v in env.items()}
        self.index = {k: i for i, k in enumerate(self.encoded)}
        self.array = _strings(list(self.encoded.values()))


def _env_entry(name, value):
    return os.fsencode(name) + b"=" + os.fsencode(value)


def _job_in_c(req, fd, envp):
    """The C spawn's arguments for a request (made when it arrives: a start held back is then only a clone).
    `envp`: the environment's C array (`_Environments.envp`), kept alive by the returned structure."""
    argv = [os.fsencode(a) for a in req["argv"]]
    return _Job(workflow=os.fsencode(req["workflow"]), hidden=_strings([os.fsencode(f) for f in req["hide"]]),
                code=os.fsencode(req["cwd"]), path=argv[0], argv=_strings(argv), envp=envp, log_fd=fd)


def _spawn_in_c(req, fd, job):
    """_spawn through nsspawn.c: the same child, with no copy of this process."""
    pid = _c_spawn(ctypes.byref(job))
    if pid < 0:
        err = ctypes.get_errno()
        raise OSError(err, "clone: %s" % os.strerror(err))
    if job.failed_step:  # the child exited before its exec (CLONE_VFORK: it has, by now)
        os.waitpid(pid, 0)
        what = SPAWN_STEPS.get(job.failed_step, "step %d" % job.failed_step)
        if job.failed_step == 11:
            what = "exec %s" % req["argv"][0]
        raise OSError(job.failed_errno, "%s: %s" % (what, os.strerror(job.failed_errno)))
    return pid


def _mount(source, target, fstype, flags, data=None):
    if _libc.mount(source, target, fstype, flags, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "mount %s: %s" % (target.decode(errors="replace"), os.strerror(err)))


def _child(req, fd, error_w):
    """In the new namespaces (PID 1 of its own): mounts, descriptors, exec. Never returns."""
    try:
        os.setsid()
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores these; a job must not inherit that
            signal.signal(sig, signal.SIG_DFL)
        _mount(None, b"/", None, MS_REC | MS_PRIVATE)
        # Order matters: /workflow is bound before .flows/ (which holds the job folder) is hidden, the project
        # after, recursively, so /mnt/code/.flows is hidden too.
        _mount(os.fsencode(req["workflow"]), WORKFLOW, None, MS_BIND)
        for folder in req["hide"]:
            _mount(b"flows-hidden", os.fsencode(folder), b"tmpfs", MS_RDONLY, b"size=4k,mode=0555")
        _mount(os.fsencode(req["cwd"]), CODE, None, MS_BIND | MS_REC)
        _mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(req["cwd"])
        try:
            os.execve(req["argv"][0], req["argv"], req["env"])
        except OSError as e:
            raise OSError(e.errno, "exec %s: %s" % (req["argv"][0], os.strerror(e.errno))) from None
    except BaseException as e:  # noqa: BLE001 - said to the launcher through the error pipe
        try:
            said = e.strerror if isinstance(e, OSError) and e.strerror and not e.filename else str(e)
            os.write(error_w, said.encode(errors="replace")[:4000])
        finally:
            os._exit(127)


def _spawn(req, fd, job):
    """Start one job; returns its pid (in the launcher's namespace) or raises OSError with the reason. `req`
    holds the job's whole environment by now (`env`); `job`: the C spawn's arguments, when it is used."""
    if _c_spawn is not None:
        return _spawn_in_c(req, fd, job)
    if SYS_CLONE is None:
        raise OSError("no clone system call number for %s" % platform.machine())
    error_r, error_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = _libc.syscall(SYS_CLONE, CLONE_NEWNS | CLONE_NEWPID | signal.SIGCHLD, 0, 0, 0, 0)
        if pid == 0:
            os.close(error_r)
            _child(req, fd, error_w)
        if pid < 0:
            err = ctypes.get_errno()
            raise OSError(err, "clone: %s" % os.strerror(err))
        os.close(error_w)
        error_w = -1
        chunks = []
        while True:  # EOF when the exec succeeded (close-on-exec) or the child died
            chunk = os.read(error_r, 4096)
            if not chunk:
                break
            chunks.append(chunk)
        if chunks:
            os.waitpid(pid, 0)
            raise OSError(b"".join(chunks).decode(errors="replace"))
        return pid
    finally:
        os.close(error_r)
        if error_w >= 0:
            os.close(error_w)


def _send(reply, message):
    """One answer on a job's reply socket (its descriptor: a write on a SOCK_SEQPACKET socket is one packet)."""
    _write(reply, json.dumps(message).encode())


def _write(reply, data):
    try:
        os.write(reply, data)
    except OSError:
        pass  # nobody listens any more (the apply is gone, or gave up on the job)


def _close(reply):
    try:
        os.close(reply)
    except OSError:
        pass


class _Held:
    """A start that waits for a running job to end: its request, descriptors and C arguments."""

    def __init__(self, req, fds, environments):
        self.req, self.log_fd = req, fds[0]
        self.reply = fds[1]  # the reply socket's descriptor (closed here once the job has been reaped)
        if _c_spawn is not None:
            self.job = _job_in_c(req, fds[0], environments.envp(req))
        else:  # (the Python fork execs with the environment as a dict)
            req["env"], self.job = environments.of(req)[0], None

    def close(self):
        os.close(self.log_fd)


class _Jobs:
    """The jobs of this launcher: running (until reaped) and held back (until one may start)."""

    def __init__(self):
        self.running = {}  # pid -> (id, reply socket's descriptor), while not reaped
        self.by_id = {}  # id -> pid
        self.waiting = collections.deque()  # _Held, in the order they came
        self.limit = None  # how many may run at once (None: no limit, every start at once)
        self.held = None  # why nothing more starts (the apply stops), once it said so
        self.environments = _Environments()

    def add(self, req, fds):
        start = _Held(req, fds, self.environments)
        if self.held is not None:
            self._refuse(start, self.held)
            return
        self.limit = req.get("running") or None
        self.waiting.append(start)
        self.start_waiting()

    def start_waiting(self):
        while self.waiting and (self.limit is None or len(self.running) < self.limit):
            start = self.waiting.popleft()
            start_by = start.req.get("start_by")
            if start_by is not None and time.monotonic() >= start_by:
                _send(start.reply, {"op": "failed", "expired": True, "error": "the apply's lock was not shown in time"})
                _close(start.reply)
                start.close()
                continue
            try:
                pid = _spawn(start.req, start.log_fd, start.job)
            except OSError as e:
                _send(start.reply, {"op": "failed", "error": e.strerror or str(e)})
                _close(start.reply)
            else:
                self.running[pid] = (start.req["id"], start.reply)
                self.by_id[start.req["id"]] = pid
                _write(start.reply, b'{"op": "started", "pid": %d}' % pid)  # (the two answers of every job:
                # made by hand, not by the json module, which cost a tenth of this process's time per job)
            finally:
                start.close()

    def hold(self, why):
        self.held = why or "the apply stopped"
        while self.waiting:
            self._refuse(self.waiting.popleft(), self.held)

    @staticmethod
    def _refuse(start, why):
        _send(start.reply, {"op": "failed", "held": True, "error": why})
        _close(start.reply)
        start.close()

    def kill(self, job_id, sig):
        if job_id in self.by_id:  # (the apply signals a job only once its start was answered)
            try:
                os.killpg(self.by_id[job_id], sig)
            except (ProcessLookupError, PermissionError):
                pass


def _receive(sock, buffer):
    """One message and the descriptors sent with it, read into `buffer` (one buffer for every message: a fresh
    buffer of MAX_MESSAGE bytes per message was a memory map made and dropped for each job)."""
    size, ancillary, _, _ = sock.recvmsg_into([buffer], socket.CMSG_SPACE(4 * array.array("i").itemsize),
                                              socket.MSG_CMSG_CLOEXEC)
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - (len(payload) % fds.itemsize)])
    return bytes(buffer[:size]), list(fds)


def serve(sock):
    jobs = _Jobs()
    buffer = bytearray(MAX_MESSAGE)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the apply decides what a Ctrl-C stops
    try:
        while True:
            readable, _, _ = select.select([sock, wake_r], [], [])
            if wake_r in readable:
                try:
                    os.read(wake_r, 4096)  # (one byte per signal; any left keeps it readable for the next select)
                except BlockingIOError:
                    pass
            ended = _reap(jobs.running, jobs.by_id)
            if ended:
                jobs.start_waiting()  # first: the freed slot runs the next job, then the apply hears of the end
                for reply, code in ended:
                    _write(reply, b'{"op": "exited", "code": %d}' % code)
                    _close(reply)
            if sock not in readable:
                continue
            try:
                data, fds = _receive(sock, buffer)
            except InterruptedError:
                continue
            if not data:
                return  # the apply closed the socket (ended or died)
            req = marshal.loads(data)
            try:
                if req["op"] == "spawn":
                    jobs.add(req, fds)
                    fds = []  # (closed by the start, once it started or was refused)
                elif req["op"] == "env":
                    jobs.environments.keep(req["id"], req["env"])
                elif req["op"] == "kill":
                    jobs.kill(req["id"], req["sig"])
                elif req["op"] == "hold":
                    jobs.hold(req.get("why"))
            finally:
                for fd in fds:
                    os.close(fd)
    finally:
        jobs.hold("the job launcher was closed")
        for pid in list(jobs.running):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in list(jobs.running):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _reap(jobs, by_id):
    """Reap every child that has ended: [(its job's reply socket, exit code)] of the jobs among them."""
    ended = []
    while jobs:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        job = jobs.pop(pid, None)
        if job is not None:
            job_id, reply = job
            by_id.pop(job_id, None)
            ended.append((reply, os.waitstatus_to_exitcode(status)))
    return ended


def main():
    sock = socket.socket(fileno=int(sys.argv[1]))
    serve(sock)


if __name__ == "__main__":
    main()
