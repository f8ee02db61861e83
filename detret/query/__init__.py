"""`detret query`: search one photo against a built run."""
