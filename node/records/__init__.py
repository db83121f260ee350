"""Records owned by this centre: achievements, demands, professionals and cases."""
