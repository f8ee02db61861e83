"""`detret report`: the HTML report and figures of a run."""
