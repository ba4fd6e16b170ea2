"""What every callagent process shares and nothing else: no project imports, stdlib only."""
