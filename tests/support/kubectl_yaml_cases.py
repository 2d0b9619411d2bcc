"""Scalars and a manifest with the JSON value kubectl sends for each (sigs.k8s.io/yaml's
conversion): shared by tests/test_manifest_yaml.py and tests/apiserver/test_yaml_as_kubectl.py."""

# plain scalar -> the JSON value the server receives (None: JSON null)
SCALARS = {
    # exponents without a dot: numbers (PyYAML: strings)
    "1e-6": 1e-06, "1E3": 1000, "-2e-3": -0.002, "+1e2": 100, "5e+00": 5,
    # sexagesimal: strings (PyYAML: 90)
    "1:30": "1:30", "190:20:30": "190:20:30",
    # a leading zero is octal; 08 and 09 are not octal, so floats (and integral: integers)
    "0755": 493, "007": 7, "08": 8, "0o17": 15, "0x1F": 31, "-0b101": -5, "0b11": 3, "1_000": 1000, "+12": 12,
    # booleans: y and n too (PyYAML: strings); yes/on/off as YAML 1.1
    "y": True, "Y": True, "yes": True, "On": True, "TRUE": True, "n": False, "NO": False, "off": False, "False": False,
    "yEs": "yEs", "tRue": "tRue",
    # nulls
    "~": None, "null": None, "NULL": None,
    # dates and timestamps: strings to an interface{} (PyYAML: datetime)
    "2026-12-01": "2026-12-01", "2026-12-01T10:00:00Z": "2026-12-01T10:00:00Z", "2026-13-45": "2026-13-45",
    # integral floats are integers in JSON; others stay floats
    "1.0": 1, "1.": 1, ".5": 0.5, "-.5": -0.5, "3.25": 3.25, "1e21": 1e21,
    # big integers overflow to floats
    "18446744073709551615": 18446744073709551615, "99999999999999999999": 100000000000000000000,
    # not numbers
    "1.2.3": "1.2.3", "0x": "0x", "+": "+", ".": ".", "1e": "1e", "12abc": "12abc", "._5": "._5",
}


def example_text(learning_rate: str) -> str:
    return f"""apiVersion: seesaw.dev/v1alpha1
kind: RLJob
metadata: {{name: lr}}
spec:
  model: {{generate: {{}}}}
  prompts: {{source: "builtin:reverse"}}
  trainer:
    optimizer: {{learningRate: {learning_rate}}}
"""
