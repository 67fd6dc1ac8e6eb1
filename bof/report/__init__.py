"""Tables and figures of the paper, made from data and metrics files."""
