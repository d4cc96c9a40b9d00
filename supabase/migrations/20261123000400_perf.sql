-- Fewer, cheaper database steps before a run's first LLM byte (issue 12).
-- Idempotent. Both backends call these functions (`select fn(...)` / `rpc()`).

-- Create a run and, when its conversation is idle, begin it in the same call:
-- jelly_create_run's result, plus jelly_begin_run's when it could begin
-- ({ready: true, message_id, memory, titled}); {ready: false} when an earlier
-- run of the conversation is active (the caller then waits with jelly_begin_run).
-- One round trip and one commit instead of two.
--
-- The commit does not wait for the WAL flush (synchronous_commit off, for this
-- transaction only): a crash of the database host could lose at most the last
-- fraction of a second of started runs, whose turns die with it anyway; the
-- run's end (jelly_finish_run, the answer) is still committed durably, and
-- flushing it flushes everything before it.
create or replace function public.jelly_start_run(
    p_token text,
    p_greeting text,
    p_conversation_id uuid default null,
    p_application text default null,
    p_multitask text default 'enqueue',
    p_owner text default null,
    p_model text default null,
    p_message text default null,
    p_memory integer default 10,
    p_timeout double precision default 120
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_ticket jsonb;
begin
    perform set_config('synchronous_commit', 'off', true);
    v_ticket := public.jelly_create_run(p_token, p_greeting, p_conversation_id,
                                        p_application, p_multitask, p_owner, p_model);
    if (v_ticket ->> 'queued')::boolean then
        return v_ticket || jsonb_build_object('ready', false);
    end if;
    return v_ticket || public.jelly_begin_run((v_ticket ->> 'run_id')::uuid, p_message,
                                              p_memory, p_timeout);
end;
$$;

select public.jelly_server_only(array['public.jelly_start_run(text, text, uuid, text, text, text, text, text, integer, double precision)']);

notify pgrst, 'reload schema';
