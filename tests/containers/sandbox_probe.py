"""Run inside the checkpoint-engine image (tests/containers/test_sandbox_in_image.py): hostile
snippets through the code-reward sandbox, with a secret file and a listening port of the pod
beside them; prints one JSON object of what each snippet managed."""
import json
import socket
import sys

from seesaw.rl.rewards.sandbox import SandboxLimits, isolation, run_python

SECRET = sys.argv[1]  # a file the pod can read and a snippet must not
LIMITS = SandboxLimits(timeout_seconds=5.0, memory_mib=256)

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
port = listener.getsockname()[1]

SNIPPETS = {
    "read_secret": f"print(open({SECRET!r}).read())",
    "write_outside": "open('/tmp/escaped', 'w').write('x'); print(open('/tmp/escaped').read())",
    "connect_to_the_pod": f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2); print('connected')",
    "fork_bomb": "import os\nwhile True:\n    os.fork()",
    "allocate_4_gib": "b = bytearray(4 * 2**30); print('allocated')",
    "print_100_mb": "import sys; sys.stdout.write('x' * 100_000_000)",
    "kill_the_parent": "import os, signal; os.kill(os.getppid(), signal.SIGKILL); print('killed')",
    "harmless": "print(sum(range(10)))",
}

found = isolation()
report = {"isolation": found.problem or "complete", "results": {}}
for name, source in SNIPPETS.items():
    result = run_python(source, "", LIMITS)
    report["results"][name] = {"returncode": result.returncode, "stdout": result.stdout[:200],
                               "timed_out": result.timed_out, "truncated": result.output_truncated}
report["the_pod_still_listens"] = listener.fileno() >= 0
try:
    open("/tmp/escaped").read()
    report["escaped_file_in_the_container"] = True
except FileNotFoundError:
    report["escaped_file_in_the_container"] = False
print(json.dumps(report))
