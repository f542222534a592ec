"""mbpo: Model-Based Policy Optimization (Janner et al. 2019) as a command-line tool."""

__version__ = "0.1.0"
