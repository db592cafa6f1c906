"""Lightning callbacks: reconstruction pictures, throughput."""
