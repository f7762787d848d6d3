"""Exporters and importers between rankscope traces and other tools' formats. No torch here.

[Note: interop]
- import: PyTorch profiler (Kineto) JSON of a distributed job (:mod:`.kineto_import`) and
  flight-recorder dumps (:mod:`.flight_recorder`) become one rankscope trace aligned across ranks
  (:mod:`.measured` assembles it).
- export: Chrome trace JSON for Perfetto (:mod:`.chrome_export`), per-rank Kineto-shaped JSON for
  HolisticTraceAnalysis (:mod:`.kineto_export`), Chakra-style JSON (:mod:`.chakra_export`).
- :mod:`.overlap` computes communication/computation overlap as HTA defines it.
Everything here reads and writes plain JSON (and, for flight-recorder pickles, only through the
restricted unpickler of :mod:`.safe_pickle`). The CLI verbs live in :mod:`.cli`.
"""
