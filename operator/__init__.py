"""The kopf operator, imported as `seesaw.operator`.

Python started in the repository root (`python -S`, a script read from stdin) puts the root
first on sys.path, where this folder would shadow the standard library's `operator`, which
`collections` and `functools` import. Imported under that bare name, this package
therefore becomes the standard library module: it runs its source in its own namespace,
importing nothing that could need `operator` first.
"""
if __name__ == "operator":
    import os as _os

    __file__ = _os.path.join(_os.path.dirname(_os.__file__), "operator.py")
    with open(__file__, encoding="utf-8") as _source:
        exec(compile(_source.read(), __file__, "exec"))
    del _os, _source
