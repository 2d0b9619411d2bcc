"""The sandbox: limits, timeouts, and code that attacks the job (its files, its network, its
ports, its processes, its memory and disk) failing at each attack."""
import ast
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

import seesaw
from seesaw.rl.rewards import sandbox
from seesaw.rl.rewards.sandbox import SandboxLimits, SandboxUnavailable, isolation, run_python

FAST = SandboxLimits(timeout_seconds=3.0, memory_mib=256)
PROJECT = Path(seesaw.__file__).resolve().parent.parent
TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def test_this_host_isolates_everything():
    # bwrap is installed by `make install`: a host where it cannot run fails here, not silently
    found = isolation()
    assert found.complete, found.problem
    assert found.filesystem and found.network and found.pid_namespace and found.process_limit and found.rlimits


def test_runs_a_program_with_stdin_and_captures_its_output():
    result = run_python("import sys; print(sys.stdin.read()[::-1]); print('err', file=sys.stderr)", "abc", FAST)
    assert result.ok and result.stdout == "cba\n" and result.stderr == "err\n"


def test_a_failing_program_reports_its_exit_status():
    result = run_python("raise SystemExit(3)", "", FAST)
    assert result.returncode == 3 and not result.ok


def test_an_endless_loop_is_killed_at_the_wall_clock_timeout():
    result = run_python("while True: pass", "", SandboxLimits(timeout_seconds=0.5))
    assert result.timed_out and result.returncode is None and result.seconds < 3


def test_a_sleeping_program_is_killed_too():
    result = run_python("import time; time.sleep(60)", "", SandboxLimits(timeout_seconds=0.5))
    assert result.timed_out and result.seconds < 3


def test_the_environment_is_scrubbed_and_the_working_directory_is_fresh():
    os.environ["SEESAW_TEST_SECRET"] = "hunter2"
    try:
        result = run_python("import os; print(sorted(os.environ)); print(os.listdir('.'))", "", FAST)
    finally:
        del os.environ["SEESAW_TEST_SECRET"]
    assert "SEESAW_TEST_SECRET" not in result.stdout and "hunter2" not in result.stdout
    assert result.stdout.splitlines()[1] == "['main.py']"


# --- the file system -----------------------------------------------------------------------------
READ = textwrap.dedent("""
    import sys
    for path in sys.stdin.read().split():
        try:
            with open(path, "rb") as handle:
                print("read", path, handle.read(20))
        except OSError as error:
            print("refused", path, error.errno)
""")


@pytest.fixture
def open_dir():
    """A directory under the host's /tmp that any uid may read and write: without the sandbox's
    own file system, a run could reach what is in it."""
    path = Path(tempfile.mkdtemp(prefix="seesaw-open-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_files_outside_the_scratch_directory_cannot_be_read(open_dir):
    secret = open_dir / "secret.txt"
    secret.write_text("hunter2")
    fake_token = open_dir / "var/run/secrets/kubernetes.io/serviceaccount/token"
    fake_token.parent.mkdir(parents=True)
    fake_token.write_text("eyJhbGciOi-token")
    for path in (secret, fake_token, *fake_token.relative_to(open_dir).parents):
        (open_dir / path).chmod(0o755 if (open_dir / path).is_dir() else 0o644)
    targets = [secret, fake_token, TOKEN, PROJECT / "seesaw" / "__init__.py", PROJECT / "pyproject.toml",
               Path(sys.executable), "/etc/passwd", "/etc/hostname", "/proc/self/environ", "/proc/1/environ",
               "/root/.bashrc", "/sys/kernel/hostname"]
    result = run_python(READ, " ".join(map(str, targets)), FAST)
    assert result.ok, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(targets) and all(line.startswith("refused") for line in lines), result.stdout
    assert "hunter2" not in result.stdout and "eyJhbGciOi" not in result.stdout


def test_only_the_interpreter_and_the_scratch_directory_are_visible():
    result = run_python("import os; print(sorted(os.listdir('/'))); print(os.getcwd())", "", FAST)
    assert result.ok, result.stderr
    top, cwd = result.stdout.splitlines()
    visible = set(ast.literal_eval(top))
    # /usr and its links, /etc (only the loader's cache), a minimal /dev, the scratch directory
    assert visible <= {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "dev", "sandbox"}, visible
    assert cwd == "/sandbox"
    etc = run_python("import os; print(os.listdir('/etc'))", "", FAST)
    assert etc.stdout.strip() in ("['ld.so.cache']", "[]")


WRITE = textwrap.dedent("""
    import sys
    for path in sys.stdin.read().split():
        try:
            with open(path, "w") as handle:
                handle.write("pwned")
            print("wrote", path)
        except OSError as error:
            print("refused", path, error.errno)
""")


def test_nothing_outside_the_scratch_directory_can_be_written(open_dir):
    name = f"seesaw-sandbox-probe-{os.getpid()}"
    host_paths = [Path(tempfile.gettempdir()) / name, PROJECT / name, open_dir / name]
    targets = [*host_paths, f"/{name}", f"/usr/{name}", f"/dev/{name}", f"/dev/shm/{name}", f"/etc/{name}"]
    try:
        result = run_python(WRITE, " ".join(map(str, targets)), FAST)
        assert result.ok, result.stderr
        assert all(line.startswith("refused") for line in result.stdout.splitlines()), result.stdout
        assert not any(path.exists() for path in host_paths)
        assert not Path(f"/{name}").exists() and not Path(f"/dev/shm/{name}").exists()
    finally:
        for path in host_paths:
            path.unlink(missing_ok=True)


def test_another_run_s_scratch_directory_is_invisible():
    # run A writes a marker into its scratch directory and stays; run B, at the same time,
    # looks for A's files at every place they could be: its own scratch and the host's
    marker = f"marker-{os.getpid()}-{time.monotonic_ns()}"
    first = {}
    writer = threading.Thread(target=lambda: first.update(result=run_python(
        f"open({marker!r}, 'w').write('mine'); import time; time.sleep(1.5); print(open({marker!r}).read())", "", FAST)))
    writer.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not list(Path(tempfile.gettempdir()).glob("seesaw-sandbox-*/main.py")):
            time.sleep(0.01)
        host_files = [str(path) for path in Path(tempfile.gettempdir()).glob("seesaw-sandbox-*/*")]
        assert host_files, "run A should be under way"
        time.sleep(0.3)  # A has written its marker
        second = run_python(READ, " ".join(host_files + [marker, f"/sandbox/{marker}"]), FAST)
    finally:
        writer.join()
    assert first["result"].ok and first["result"].stdout == "mine\n"
    assert second.ok and all(line.startswith("refused") for line in second.stdout.splitlines()), second.stdout


# --- the network and the job's ports ------------------------------------------------------------
def test_the_job_s_own_ports_and_sockets_cannot_be_reached():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.5)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract_name = f"\0seesaw-test-{os.getpid()}"
    abstract.bind(abstract_name)
    abstract.listen(8)
    source = textwrap.dedent(f"""
        import socket
        for family, address in ((socket.AF_INET, ("127.0.0.1", {server.getsockname()[1]})),
                                (socket.AF_INET, ("10.255.255.1", 80)), (socket.AF_UNIX, {abstract_name!r})):
            try:
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    s.settimeout(1)
                    s.connect(address)
                print("connected", address)
            except OSError as error:
                print("blocked", error.errno)
    """)
    try:
        result = run_python(source, "", FAST)
        assert result.ok, result.stderr
        assert [line.split()[0] for line in result.stdout.splitlines()] == ["blocked"] * 3, result.stdout
        with pytest.raises(socket.timeout):
            server.accept()  # nothing arrived
    finally:
        server.close()
        abstract.close()


# --- the kernel -----------------------------------------------------------------------------
NAMESPACES = textwrap.dedent("""
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET = 0x10000000, 0x00020000, 0x40000000
    CLONE = {"x86_64": 56, "aarch64": 220}[os.uname().machine]
    for name, call in (("unshare user", lambda: libc.unshare(CLONE_NEWUSER)),
                       ("unshare mount", lambda: libc.unshare(CLONE_NEWUSER | CLONE_NEWNS)),
                       ("unshare net", lambda: libc.unshare(CLONE_NEWNET)),
                       ("clone user", lambda: libc.syscall(CLONE, CLONE_NEWUSER | 17, 0, 0, 0, 0)),
                       ("mount tmpfs", lambda: libc.mount(b"none", b"/sandbox", b"tmpfs", 0, None)),
                       ("ptrace", lambda: libc.ptrace(16, 1, 0, 0))):
        result = call()
        print(name, "refused" if result == -1 else f"allowed {result}", os.strerror(ctypes.get_errno()))
    pid = os.fork()  # plain processes and threads are still allowed
    if pid == 0:
        os._exit(0)
    print("fork", os.waitpid(pid, 0)[1])
""")


def test_the_code_can_make_no_namespace_of_its_own():
    # a nested user namespace would give it a mount namespace and a tmpfs outside its limits
    result = run_python(NAMESPACES, "", FAST)
    assert result.ok, result.stderr
    lines = result.stdout.splitlines()
    assert all(" refused " in line for line in lines[:-1]), result.stdout
    assert lines[-1] == "fork 0"


OTHER_ABIS = textwrap.dedent(r"""
    import ctypes, mmap, sys
    if sys.stdin.read() == "x32":
        print(ctypes.CDLL(None).syscall(39 | 0x40000000), flush=True)  # getpid, x32 numbering
    else:
        code = b"\xb8\x14\x00\x00\x00\xcd\x80\xc3"  # mov eax, 20 (getpid, i386); int 0x80; ret
        page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(code)
        print(ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))(), flush=True)
""")


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the 32-bit and x32 system-call ABIs are x86-64's")
def test_a_system_call_of_another_abi_kills_the_program():
    # a filter written for x86-64 numbers must not be walked around through int 0x80 or x32
    for abi in ("i386", "x32"):
        result = run_python(OTHER_ABIS, abi, FAST)
        assert result.returncode == 128 + signal.SIGSYS and result.stdout == "", (abi, result)


def test_the_seccomp_filter_is_a_bpf_program():
    program = sandbox.seccomp_filter()
    assert program and len(program) % 8 == 0  # struct sock_filter: 8 bytes per instruction


@pytest.mark.skipif(os.geteuid() != 0, reason="simulating a pod's /proc needs a mount namespace of root's")
def test_the_sandbox_holds_in_a_pod_s_proc_as_the_image_s_user():
    # A container's /proc has masked files and a read-only /proc/sys: bwrap can then mount no
    # new /proc and cannot write /proc/sys/user/max_user_namespaces (--disable-userns). The
    # sandbox must run there, as the checkpoint-engine image's uid 10001, and still hold.
    python = shutil.which("python3", path=sandbox.SYSTEM_PATH)
    script = textwrap.dedent(f"""
        import importlib.util, json, sys
        spec = importlib.util.spec_from_file_location("sandbox", {sandbox.__file__!r})
        sandbox = importlib.util.module_from_spec(spec)
        sys.modules["sandbox"] = sandbox
        spec.loader.exec_module(sandbox)
        found = sandbox.isolation()
        limits = sandbox.SandboxLimits(timeout_seconds=3, max_processes=8)
        runs = json.load(sys.stdin) if found.complete else []
        print(json.dumps({{"problem": found.problem, "stdout": [sandbox.run_python(*run, limits).stdout for run in runs]}}))
    """)
    # what the runtime does to a container's /proc (masked files, read-only /proc/sys), and
    # the check that it took: there, bwrap runs, but cannot mount a new /proc
    bwrap = "bwrap --unshare-all --ro-bind / / --dev /dev"
    pod_proc = ("for f in /proc/kcore /proc/keys /proc/timer_list; do [ -e $f ] && mount --bind /dev/null $f; done; "
                "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && "
                "as_image_user='setpriv --reuid=10001 --regid=10001 --clear-groups --inh-caps=-all --' && "
                f"$as_image_user {bwrap} /usr/bin/true && ! $as_image_user {bwrap} --proc /proc /usr/bin/true 2>/dev/null && "
                "exec $as_image_user \"$@\"")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(script)
    os.chmod(handle.name, 0o644)
    runs = [[READ, f"{TOKEN} {PROJECT}/pyproject.toml /proc/self/environ"], [FORK_BOMB, ""], [NAMESPACES, ""]]
    try:
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", pod_proc, "sh", python,
                               handle.name], input=json.dumps(runs), text=True, capture_output=True, timeout=60, cwd="/")
    finally:
        os.unlink(handle.name)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["problem"] is None
    read, fork_bomb, namespaces = report["stdout"]
    assert [line.split()[0] for line in read.splitlines()] == ["refused"] * 3, read
    assert int(fork_bomb) < 8  # no uid switch here (not root): the user namespace makes the limit per run
    assert all(" refused " in line for line in namespaces.splitlines()[:-1]), namespaces


# --- processes, memory, disk, output -----------------------------------------------------------
FORK_BOMB = textwrap.dedent("""
    import os, time
    children = 0
    try:
        while children < 1000:
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
            children += 1
    except OSError:
        pass
    print(children)
""")


def test_the_program_cannot_kill_its_parent_the_scorer_or_any_process_outside():
    victim = subprocess.Popen(["sleep", "60"])  # a process of the job, outside the sandbox
    try:
        source = textwrap.dedent(f"""
            import os, signal
            for name, pid in (("parent", os.getppid()), ("scorer", {os.getpid()}), ("victim", {victim.pid})):
                try:
                    os.kill(pid, signal.SIGKILL)
                    print(name, "signalled")
                except OSError as err:
                    print(name, type(err).__name__)
            os.kill(-1, signal.SIGKILL)  # every process it may signal, itself included
        """)
        result = run_python(source, "", SandboxLimits(timeout_seconds=5.0))
        lines = result.stdout.splitlines()
        # outside PIDs do not exist in the sandbox's PID namespace
        assert "scorer ProcessLookupError" in lines and "victim ProcessLookupError" in lines, result
        assert victim.poll() is None  # the job's process lives
        assert _sandbox_processes() == []
    finally:
        victim.kill()
        victim.wait()


def test_a_fork_bomb_stops_at_the_process_limit_and_leaves_nothing_behind():
    limits = SandboxLimits(timeout_seconds=5.0, max_processes=8)
    result = run_python(FORK_BOMB, "", limits)
    assert result.ok and int(result.stdout) < 8
    # the children slept for 60 s: they must be gone with the run
    assert _sandbox_processes() == []


def test_an_unbounded_fork_bomb_ends_at_the_timeout_with_nothing_left():
    started = time.monotonic()
    result = run_python("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", "",
                        SandboxLimits(timeout_seconds=1.0))
    assert result.timed_out and time.monotonic() - started < 5
    assert _sandbox_processes() == []


def test_a_timed_out_run_takes_its_children_with_it():
    source = "import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        os.setsid()\n        time.sleep(60)\n" \
             "while True:\n    pass\n"
    result = run_python(source, "", SandboxLimits(timeout_seconds=0.5))
    assert result.timed_out
    assert _sandbox_processes() == []


def _sandbox_processes():
    # as root, each run has its own uid from the pool; otherwise its processes are in a PID
    # namespace whose end the run waits for (bwrap --as-pid-1), checked by the same tests
    return [pid for pid in os.listdir("/proc") if pid.isdigit() and (_uid(pid) or 0) >= sandbox.UID_POOL_START]


def _uid(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("Uid:"))
    except (OSError, StopIteration):
        return None


def test_memory_beyond_the_limit_is_refused():
    result = run_python("x = bytearray(1024 * 1024 * 1024)", "", FAST)
    assert not result.ok and "MemoryError" in result.stderr


def test_the_disk_a_run_can_fill_is_bounded():
    source = textwrap.dedent("""
        import errno, os
        try:
            with open("big", "wb") as handle:
                for _ in range(64):
                    handle.write(b"x" * 65536)
        except OSError as error:
            print("big", errno.errorcode[error.errno], os.path.getsize("big"))
        os.remove("big")
        written = 0
        try:
            for n in range(1000):
                with open(f"part{n}", "wb") as handle:
                    handle.write(b"x" * 65536)
                written += 1
        except OSError as error:
            print("parts", errno.errorcode[error.errno], written)
    """)
    result = run_python(source, "", SandboxLimits(timeout_seconds=3.0, file_size_mib=1))
    assert result.ok, result.stderr
    big, parts = (line.split() for line in result.stdout.splitlines())
    # one file: RLIMIT_FSIZE, or the scratch tmpfs of the same size, whichever is first
    assert big[1] in ("EFBIG", "ENOSPC") and int(big[2]) <= sandbox.MiB
    # many files: the 1 MiB tmpfs is full after fewer than 16 of 64 KiB
    assert parts[1] == "ENOSPC" and int(parts[2]) < 16


def test_output_is_capped():
    result = run_python("print('x' * 5000)", "", SandboxLimits(max_output_bytes=100))
    assert result.output_truncated and len(result.stdout) == 100


def test_endless_output_stops_at_the_file_size_limit():
    started = time.monotonic()
    limits = SandboxLimits(timeout_seconds=5.0, file_size_mib=1, max_output_bytes=4096)
    result = run_python("while True:\n    print('x' * 65536)\n", "", limits)
    # the output file stops growing at 1 MiB (RLIMIT_FSIZE: the program's write fails), and
    # what the scorer reads of it is capped again
    assert not result.ok and not result.timed_out and "File too large" in result.stderr
    assert result.output_truncated and len(result.stdout) == 4096 and time.monotonic() - started < 4


# --- the command, and a host that cannot run it ------------------------------------------------
def test_the_command_binds_only_the_system_read_only():
    prefix = sandbox.bwrap_prefix("/usr/bin/bwrap", "/usr/bin/setpriv")
    assert prefix[:2] == ["/usr/bin/setpriv", "--reuid={uid}"] and "/usr/bin/bwrap" in prefix
    bwrap = prefix[prefix.index("/usr/bin/bwrap"):]
    for option in ("--unshare-all", "--unshare-user", "--die-with-parent", "--as-pid-1",
                   "--new-session", "--clearenv"):
        assert option in bwrap
    assert "--bind" not in bwrap and "--dev-bind" not in bwrap and "--proc" not in bwrap
    sources = [bwrap[i + 1] for i, part in enumerate(bwrap) if part == "--ro-bind"]
    assert "/usr" in sources and set(sources) <= {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                                                  "/etc/ld.so.cache"}
    assert sandbox.bwrap_prefix("/usr/bin/bwrap", None)[0] == "/usr/bin/bwrap"  # not root: no uid switch
    run = sandbox.run_options(SandboxLimits(file_size_mib=2), 7, 8)
    assert run[:4] == ["--size", str(2 * sandbox.MiB), "--tmpfs", "/sandbox"]
    assert run[4:7] == ["--file", "7", "/sandbox/main.py"] and run[-1] == "--"
    assert run.index("--remount-ro") > run.index("--file")  # the root is sealed after the program is in place
    assert run[run.index("--seccomp") + 1] == "8"


@pytest.fixture
def fresh_probe():
    sandbox.isolation.cache_clear()
    yield
    sandbox.isolation.cache_clear()


def test_without_bwrap_nothing_runs_and_the_error_says_why(fresh_probe, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    found = isolation()
    assert not found.complete and not found.filesystem and not found.network
    assert "bwrap (bubblewrap) is not installed" in found.problem and "seccompProfile" in found.problem
    with pytest.raises(SandboxUnavailable, match="cannot run on this host: bwrap"):
        run_python("print('unsandboxed')", "", FAST)


def test_a_bwrap_that_cannot_create_namespaces_is_refused_with_its_reason(fresh_probe, monkeypatch):
    # what bwrap says under a seccomp profile that forbids unshare/clone of namespaces
    fake = Path(tempfile.mkdtemp(prefix="seesaw-fake-bwrap-"))
    try:
        fake.chmod(0o755)
        (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace, likely because "
                                    "the kernel does not allow non-privileged user namespaces.' >&2\nexit 1\n")
        (fake / "bwrap").chmod(0o755)
        monkeypatch.setenv("PATH", f"{fake}:/usr/bin:/bin")
        found = isolation()
        assert not found.complete and "No permissions to creating new namespace" in found.problem
        with pytest.raises(SandboxUnavailable, match="No permissions to creating new namespace"):
            run_python("print('unsandboxed')", "", FAST)
    finally:
        for path in fake.iterdir():
            path.unlink()
        fake.rmdir()


def test_an_old_kernel_is_refused_where_runs_would_share_a_uid(fresh_probe, monkeypatch):
    # before Linux 5.14 RLIMIT_NPROC counts every process of the uid: without root's uid per
    # run, the job's own threads would share the fork-bomb limit with the code
    monkeypatch.setattr(sandbox, "kernel_version", lambda: (5, 10))
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 10001)
    found = isolation()
    assert not found.complete and "needs 5.14 or later" in found.problem


def test_limits_name_the_bad_field():
    with pytest.raises(ValueError, match="timeout_seconds: expected > 0"):
        SandboxLimits(timeout_seconds=0)
    with pytest.raises(ValueError, match="memory_mib"):
        SandboxLimits(memory_mib=0)
    assert SandboxLimits.from_spec({"timeoutSeconds": 2, "memoryMiB": 64}) == SandboxLimits(timeout_seconds=2.0, memory_mib=64)
