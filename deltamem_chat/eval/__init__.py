"""`deltamem-chat eval`: a benchmark of transcripts through the A/B lanes, under one or more context conditions.

A run is a list of units (one transcript under one condition), each appended to a results file as soon as it is
done, so hours of GPU work survive Ctrl-C or a crash (at most the unit in progress is lost) and the same command
continues where it stopped; `--shard K/N` splits the units between machines and `--merge` joins their results.
"""
