"""fastconv.bench: the benchmark and profiling harness (`fastconv bench`, `fastconv profile`).

    roofline   FLOP and byte counts per op, ceilings, the roofline arithmetic
    suites     shape suites (benchmarks/suites/*.json): loading, validation, expansion into cases
    derive     how the suites were derived from the networks (and regenerating them)
    runners    fastconv and baseline implementations of each op behind one small protocol
    timing     CUDA-event / perf_counter timers, alternating implementations, input rotation
    ceilings   measuring bandwidth and matrix rate at the start of a run
    bench      the `bench` command;  train_step: the model-step benchmark
    profile    the `profile` command; nvtx, kernels: NVTX ranges, kernel attributes, occupancy
    report     tables, JSON documents, plots;  results: benchmarks/RESULTS.md from recorded results
"""
