"""Request workloads for serving: when requests arrive and how many tokens each brings and asks for.

simulator.workloads.table    the Workload arrays and their checks
simulator.workloads.parse    workload CSV files (ours, or the Azure trace's raw columns) -> Workload
simulator.workloads.generate Poisson and Gamma arrivals, rate rescaling, lengths from a trace or fixed
simulator.workloads.convert  the Azure LLM inference trace 2023 -> the shipped workloads/*.csv.gz
"""
