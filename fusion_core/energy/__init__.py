"""Energy accounting: device profiles, FLOP counts, per-frame ledgers and real energy meters.

Import from the modules directly: ``profile`` (device profiles, ``configs/energy/*.yaml``),
``flops`` (FLOPs per module, CPU attention included), ``ledger`` (joules by component per frame
and per run) and ``meters`` (Intel RAPL and Jetson INA3221 power rails when the machine has them).
"""
