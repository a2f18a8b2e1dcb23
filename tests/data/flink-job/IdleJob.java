import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;

/**
 * A streaming job that never ends and does next to nothing: something real for the JobManager to list, stop
 * with a savepoint and cancel in tests/it/real_jobmanager.rs. The slow map backpressures the source, so the job
 * does not spin a CPU. Its name and job id come from -Dpipeline.name and -D$internal.pipeline.job-id.
 */
public class IdleJob {
    /** Passes each number on after a pause. */
    public static class Slow implements MapFunction<Long, Long> {
        @Override
        public Long map(Long value) throws Exception {
            Thread.sleep(100);
            return value;
        }
    }

    public static void main(String[] args) throws Exception {
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.fromSequence(0, Long.MAX_VALUE).map(new Slow()).filter(x -> x < 0).print();
        env.execute();
    }
}
